"""facenet-toolchain: recover, rebuild, export and run the legacy Keras FaceNet model.

This module stays import-light: the legacy environment imports the pure submodules
(``toolchain.legacy``, ``toolchain.core.preprocess``, ``toolchain.core.atomic``) without the modern
stack.
"""

__version__ = "0.1.0"
