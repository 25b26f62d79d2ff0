"""Reading legacy Keras ``.h5`` files and vetting their Lambda bytecode, without TensorFlow.

Pure modules (standard library, numpy, h5py, xdis; uncompyle6 only when decompiling): the modern
command line and the legacy Keras 2.15 environment both import them. Nothing here executes code
found in a file.
"""
