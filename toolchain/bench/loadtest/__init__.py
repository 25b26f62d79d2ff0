"""Load session of ``facenet serve``: concurrent clients on loopback, the CLI beside, a SIGKILL.

The server is a real ``facenet serve`` process (``python -m toolchain serve`` of the given
interpreter) bound to 127.0.0.1 on a free port, with its own gallery in a temporary folder; the
shared people are enrolled through the API first. Then:

1. **Load**: ``clients`` threads send ``requests`` requests between them (one in ``enroll_every``
   an enrollment of a shared people photo, the rest recognitions of the shared photos); every
   request's latency and status is recorded; 503 (queue full) is counted apart from errors.
2. **Burst**: ``burst`` recognitions released together against a server whose ``--queue`` is
   ``burst_queue``: those beyond its places get 503 with ``Retry-After`` at once, and the server
   stays healthy.
3. **CLI**: ``facenet recognize`` on the photos the load recognized, once on one photo and once
   on all, so the report gives its photos/s with and without the process start.
4. **Kill**: a fresh server on the same gallery gets ``kill_enrollments`` simultaneous
   enrollments (unique names, two photos each) and is SIGKILLed once a third are acknowledged.
   The gallery file is checked read-only (SQLite integrity, schema, unit vectors, the model's
   fingerprint), then a new server lists the people: every acknowledged enrollment must be
   there, no enrollment may be partial, the people enrolled before must be unchanged.

Everything is bounded: counts are fixed, every HTTP call and subprocess has a timeout, and only
127.0.0.1 is contacted. The HTTP client is the standard library's, so the session runs in the
runtime environment (no ``requests``).

:mod:`.server` starts a server and talks to it, :mod:`.inputs` holds the settings and the
photos sent, :mod:`.phases` runs the load, the burst and the CLI, :mod:`.kill` the SIGKILL check,
:mod:`.report` holds the report and writes it, and :mod:`.session` runs the phases in turn.
"""

from toolchain.bench.loadtest.inputs import LoadConfig
from toolchain.bench.loadtest.report import markdown, write_report
from toolchain.bench.loadtest.session import run_session

__all__ = ["LoadConfig", "markdown", "run_session", "write_report"]
