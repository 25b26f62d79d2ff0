"""What the tests share that is not a test or a fixture (pytest puts ``tests/`` on ``sys.path``).

- :mod:`helpers.legacy_h5`: tiny Keras 2.1.2-layout ``.h5`` files and their broken variants.
- :mod:`helpers.real`: where the shared real data and the main job's artifacts are; a command run
  on a read-only folder.
- :mod:`helpers.corpus` and ``helpers.corpus_*``: the bad-input corpus (one module per area).
- :mod:`helpers.runtime_fakes`: a synthetic world (square "faces", a tiny FaceNet-signature
  ONNX model) for runtime tests that need no exported model.
- :mod:`helpers.service_server`: a real ``facenet serve`` process for the service tests.
- :mod:`helpers.gallery_backends`: editing and checking a gallery under either backend.
- :mod:`helpers.convert_models`: the legacy files of the ``facenet model convert`` tests.
"""
