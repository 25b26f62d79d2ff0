"""The documentation: sources, the rendered pages, the measurement snapshot and the tooling."""
