"""The ``facenet`` command line: the root app and one module per command group (thin adapters)."""
