"""Deploy targets proven for real: the container image and aarch64 (a Raspberry Pi's CPU).

``container`` builds ``toolchain/service/container/Dockerfile`` without a daemon (a Debian base
made with debootstrap, buildah with chroot isolation, hash-pinned wheels fetched on the host) and
runs the image's own ``CMD`` as its non-root user. ``arm64`` runs the face pipeline on an arm64
Debian under qemu-user, emulating a Raspberry Pi 4's Cortex-A72, next to the same run on x86.
``host`` holds what both share (commands, apt, debootstrap roots, wheel locks, timings),
``running`` a container run like a service, ``pi`` the boards and their expected speed. These
run in the Python that runs nox and import nothing beyond the standard library and
``toolchain.core``; ``probe`` runs inside the environments under test (numpy, ONNX Runtime).
"""
