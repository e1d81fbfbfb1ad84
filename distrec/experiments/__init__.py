"""Experiments built from runs: ``distrec sweep`` (grid / random search x seeds on Ray Tune)."""
