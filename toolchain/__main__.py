"""``python -m toolchain`` runs the ``facenet`` command line."""

from toolchain.cli import main

main()
