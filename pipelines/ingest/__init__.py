"""Ingest stages: landing, reading, profiling and validation of data files."""
