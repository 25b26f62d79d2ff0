"""The core tier: errors, artifact paths, atomic writes, integrity, preprocessing, the pinned
source.

Nothing here imports TensorFlow, Keras, ONNX Runtime or typer (an import contract in
``pyproject.toml`` checks it), so every other tier, and the legacy Keras 2.15 environment, can use
it.
"""
