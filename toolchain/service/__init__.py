"""``facenet serve``: the recognizer as an HTTP service, with a web page, on the runtime stack.

An ASGI application (FastAPI on uvicorn) over the same :class:`~toolchain.runtime.recognizer.
Recognizer` and gallery as the command line, without TensorFlow. Modules:

- ``config``: the limits and options of one server (:class:`ServiceConfig`, :class:`Limits`).
- ``errors``: the one JSON error shape and its codes, with the CLI's exit codes.
- ``pool``: the fixed pool of inference threads with a bounded queue (503 when it is full).
- ``engine``: what the endpoints do, on the pool: detect, recognize, compare, enroll, list and
  remove people, with one write path to the gallery.
- ``uploads``: images from multipart forms or base64 JSON, never from a URL.
- ``metrics``: the Prometheus counters and histograms.
- ``app``: the FastAPI application, its middleware and routes; ``web/`` holds the page at ``/``
  and the offline API docs.

Only this package (and the ``serve`` command's body) imports FastAPI, Starlette and uvicorn; it
imports the runtime and core tiers, never the converters, the benchmarks or TensorFlow.
"""
