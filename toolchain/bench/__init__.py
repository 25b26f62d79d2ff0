"""Benchmarks measured side by side, each runtime in its own worker process (``facenet bench``)."""
