"""A tiny test image for lab hosts: busybox-static (httpd, nc, sh) in a `docker import`ed rootfs."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile

from lab import LabHost

IMAGE = "samarth-busybox:1"


def import_busybox(host: LabHost) -> str:
    """Import the image on ``host``'s daemon (idempotent) and return its name."""
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is not installed (tools/test-packages.txt)"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        tar.add(busybox, arcname="bin/sh")
        page = b"ok\n"
        info = tarfile.TarInfo("www/index.html")
        info.size = len(page)
        tar.addfile(info, io.BytesIO(page))
    subprocess.run(
        ["docker", "-H", host.docker_host, "import", "-", IMAGE], input=buffer.getvalue(), check=True, capture_output=True
    )
    return IMAGE
