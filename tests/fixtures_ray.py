"""One local Ray cluster (127.0.0.1) shared by every test that needs Ray."""
