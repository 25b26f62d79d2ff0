"""The only skips CI tolerates, each an explicit mark on the tests that may take it.

Under CI (``CI=true`` / ``FACENET_REQUIRE_REAL=1``) ``tests/conftest.py`` turns every skip into a
failure unless the test carries ``pytest.mark.allow_skip(PHRASE, reason=WHY)`` and the skip's
reason contains ``PHRASE``: the allowance names the one condition it tolerates, so the same test
still fails under CI when something else (an artifact, an environment, a service) is missing.
The conditions below are properties of the account or machine the suite runs on, which no nox
session can install.
"""

from __future__ import annotations

import pytest

READ_ONLY_AS_ROOT = "cannot make a file read-only to root"
"""The skip reason of :func:`helpers.corpus.read_only_runner` (root without CAP_SETPCAP)."""

READ_ONLY_MOUNT = "read-only mount"
"""The skip reasons of :func:`helpers.real.run_read_only` (root without a private mount)."""

MKNOD_NEEDS_ROOT = "mknod of a device node needs root"
"""The skip reason of the special-file tests of ``tests/test_atomic.py`` (not root)."""

NO_CONTAINER_ENGINE = "no container engine answers here"
"""The skip reason of a documented ``docker`` block in ``tests/test_docs.py``."""

NOT_AARCH64 = "not an aarch64 machine"
"""The skip reason of a documented Raspberry Pi install block in ``tests/test_docs.py``."""

read_only_as_root = pytest.mark.allow_skip(
    READ_ONLY_AS_ROOT,
    reason="root writes through file modes; dropping CAP_DAC_OVERRIDE needs CAP_SETPCAP, which a "
           "container may withhold, and then no unprivileged read-only file can be staged")

read_only_mount = pytest.mark.allow_skip(
    READ_ONLY_MOUNT,
    reason="as root only a read-only bind mount in a private mount namespace is read-only; a "
           "container without CAP_SYS_ADMIN cannot make one")

mknod_needs_root = pytest.mark.allow_skip(
    MKNOD_NEEDS_ROOT,
    reason="only root can make a character device node (mknod), the special file these tests "
           "stage")

no_container_engine = pytest.mark.allow_skip(
    NO_CONTAINER_ENGINE,
    reason="a `docker` block needs a container engine, which the suite does not install; "
           "tests/test_service_container.py builds and runs the same image without one")

not_aarch64 = pytest.mark.allow_skip(
    NOT_AARCH64,
    reason="the Raspberry Pi install block installs aarch64 wheels, which only an aarch64 machine "
           "runs natively; tests/test_deploy_arm64.py installs and runs the same lock's wheels "
           "under emulation")
