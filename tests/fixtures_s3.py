"""S3 test fixtures (moto server on 127.0.0.1). Filled in by the data work."""
