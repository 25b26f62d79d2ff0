"""``python -m toolchain`` runs the ``facenet`` command line."""

from toolchain.cli.main import main

main()
