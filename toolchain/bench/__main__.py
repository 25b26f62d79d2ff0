"""``python -m toolchain.bench SPEC RESULT``: one benchmark worker process."""

import sys

from toolchain.bench.worker import worker_main

sys.exit(worker_main(sys.argv[1:]))
