"""Debian's nginx as the tests run it: every file it writes under a directory of the test's own, and
``nginx -t`` as root of a namespace of its own (tests/support/skip_policy.py), so it runs for any user."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.skip_policy import as_root

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def temp_paths(prefix: Path) -> str:
    """The http-level directives that put nginx's temporary files under ``prefix`` (Debian's build keeps
    them in /var/lib/nginx, which only root may write)."""
    return " ".join(f"{kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def check(config: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` of the main configuration ``config`` (no ``user`` directive; its pid, logs and
    temporary paths under ``prefix``). As the image's nginx it runs as root and binds the ports the file
    names, 80 and 443 included: here in a network namespace of its own, where no listener of this
    machine is in the way."""
    # Its workers as root too: in a user namespace only root is mapped, and nginx hands its temporary
    # directories to the workers' user.
    argv = [NGINX, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(config), "-g", "user root;"]
    return subprocess.run(as_root(argv, private_network=True), capture_output=True, text=True, timeout=60)
