"""A lab of five machines (booted Debian with systemd, sshd and dockerd), started once per test process.

``lab_session`` and ``lab_agent`` are imported by conftest.py. It picks a prefix and a free subnet of its own, so
several test processes (pytest-xdist's workers, and a developer's `python -m lab up`) can run on one machine at
once; docs/lab.md says why each worker has a lab of its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import Lab, LabHost, free_subnet, machine_lock, unavailable
from lab.core import RUN_DIR

# Named after servers, so tests can map config names to lab hosts one to one.
LAB_HOSTS = ("swarm-master", "swarm-node2", "swarm-node3", "application", "db2")


@dataclass(frozen=True)
class LabSession:
    lab: Lab
    hosts: list[LabHost]

    def host(self, name: str) -> LabHost:
        return next(h for h in self.hosts if h.name == name)


def reap_abandoned_labs() -> None:
    """Tear down labs of test runs that died before their own teardown (their prefix ends in their
    pid), so they do not pile up on a developer's machine."""
    if not RUN_DIR.exists():
        return
    for directory in RUN_DIR.iterdir():
        owner = re.fullmatch(r"[a-z](\d+)", directory.name)
        if owner and not Path(f"/proc/{owner.group(1)}").exists() and (directory / "lab.json").exists():
            Lab.recorded(directory.name).down()


def _started(lab: Lab) -> list[LabHost]:
    """``LAB_HOSTS`` up on ``lab`` (made under ``machine_lock``, its subnet free); down again if that fails."""
    try:
        return lab.up(list(LAB_HOSTS))
    except BaseException:
        lab.down()
        raise


@pytest.fixture(scope="session")
def lab_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabSession]:
    if reason := unavailable():
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("lab") / "state"
    with machine_lock():
        reap_abandoned_labs()
        lab = Lab(prefix=f"t{os.getpid()}", subnet=free_subnet(), state_dir=state, timeout=90)
        hosts = _started(lab)
    try:
        yield LabSession(lab=lab, hosts=hosts)
    finally:
        lab.down()


@pytest.fixture()
def lab_agent(lab_session: LabSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An ssh-agent holding the lab key, as an operator's would hold theirs (``SSH_AUTH_SOCK`` for this
    test): the tools' ssh and the Docker provider's ssh client (and its ProxyCommand) use it."""
    socket = tmp_path / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if socket.exists():
                break
            subprocess.run(["sleep", "0.05"])
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
        subprocess.run(["ssh-add", "-q", str(lab_session.lab.key_path)], check=True, capture_output=True)
        yield
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
