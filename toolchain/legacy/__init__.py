"""Reading legacy Keras ``.h5`` files, vetting their Lambda bytecode and reporting what they hold
(:mod:`toolchain.legacy.inspect`), without TensorFlow.

Pure modules (standard library, numpy, h5py, xdis; uncompyle6 only when decompiling): the modern
command line and the legacy Keras 2.15 environment both import them. Nothing here executes code
found in a file.
"""
