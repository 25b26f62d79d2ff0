"""The core tier: what every other tier (and the legacy Keras 2.15 environment) may use.

``errors`` (typed errors with exit codes), ``paths`` (the artifacts layout), ``atomic`` (writes
that replace only regular files, whole or not at all), ``integrity/`` (SHA256SUMS, model, cache and
gallery checks), ``preprocess`` (crop and prewhiten), ``source`` (the pinned legacy file and
photos), ``contracts`` (file names, sizes and photo suffixes the tiers share), ``metrics``
(distances, identification, verification, threshold rules), ``pair_metrics`` (TAR at a FAR,
accuracy at a threshold, k-fold accuracy, the FAR threshold rule) and ``lazy`` (public names
imported on first use).
Nothing here imports TensorFlow, Keras, ONNX Runtime or typer; import contracts in
``pyproject.toml`` check it.
"""
