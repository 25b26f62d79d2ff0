"""Convert ANY legacy Keras ``.h5`` whose layers the table knows: the config-driven path.

:mod:`.layers` is the table of supported layer classes (:mod:`.fields`: what happens to each config
field), :mod:`.build` rebuilds the file's ``model_config`` in Keras 3 from it, :mod:`.weights` loads
the dumped npz strictly, :mod:`.exporters` writes and validates each format, :mod:`.parity` compares
every format with the ORIGINAL graph run in the legacy Keras 2.15 environment, :mod:`.pipeline` runs
it all for ``facenet model convert`` and :mod:`.table` renders the layer table.
"""
