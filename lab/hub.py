"""A stand-in for Docker Hub on a lab machine: a plain registry (the lab's registry image, no login), which
the lab stack's Docker Hub mirror pulls through (``mirror.remoteUrl``), since no lab machine reaches Docker
Hub. ``publish`` puts an image of the machine's daemon there under a Docker Hub repository path
(``library/<name>:<tag>`` for an official image), so a ``docker pull <name>:<tag>`` on a machine whose dockerd lists the mirror
is served through it."""

from __future__ import annotations

import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from components.shared.distribution import CONFIG_PATH

from .core import LabError, LabHost, docker

PORT = 5010
CONTAINER = "lab-hub"
REGISTRY = "registry:3.1.1"  # the lab serves Debian's docker-registry under the pinned reference
# A registry as Docker Hub is to its clients: anonymous pulls (the image's default config asks for a login).
CONFIG = {
    "version": 0.1,
    "log": {"level": "info", "fields": {"service": "lab-hub"}},
    "storage": {"filesystem": {"rootdirectory": "/var/lib/registry"}, "delete": {"enabled": True}},
    "http": {"addr": ":5000"},
}


def url(host: LabHost) -> str:
    """Where the stand-in answers: ``host``'s address, port ``PORT``."""
    return f"http://{host.address}:{PORT}"


def answers(address: str, timeout: float = 60) -> None:
    """Wait until the registry at ``address`` answers ``/v2/``; LabError when it does not in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{address}/v2/", timeout=5) as response:
                response.read()
            return
        except OSError as error:
            if time.monotonic() > deadline:
                raise LabError(f"the registry at {address} does not answer: {error}") from None
            time.sleep(0.5)


def start(host: LabHost) -> str:
    """Run the stand-in on ``host`` (idempotent: one that runs is kept) and return its URL."""
    from .rehearsal_images import serve  # builds images: only when a stand-in is started

    serve(host, REGISTRY)
    running = docker(host, "inspect", "--format", "{{.State.Running}}", CONTAINER)
    if running.stdout.strip() != "true":
        docker(host, "rm", "-f", "-v", CONTAINER)
        created = docker(host, "create", "--name", CONTAINER, "--restart", "unless-stopped", "-p", f"{PORT}:5000", REGISTRY, CONFIG_PATH)
        if created.returncode != 0:
            raise LabError(f"{host.name}: the Docker Hub stand-in was not created: {created.stderr.strip()}")
        with tempfile.TemporaryDirectory() as work:
            config = Path(work) / "config.yml"
            config.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
            copied = docker(host, "cp", str(config), f"{CONTAINER}:{CONFIG_PATH}")
        started = docker(host, "start", CONTAINER)
        if copied.returncode != 0 or started.returncode != 0:
            raise LabError(f"{host.name}: the Docker Hub stand-in did not start: {copied.stderr.strip()} {started.stderr.strip()}")
    answers(url(host))
    return url(host)


def hub_path(reference: str) -> str:
    """Docker Hub's repository path of ``reference`` with its tag, an official image's under ``library/``
    (``postgres:15.18`` -> ``library/postgres:15.18``, ``restic/restic:0.18.1`` unchanged)."""
    return reference if "/" in reference.split(":", 1)[0] else f"library/{reference}"


def publish(host: LabHost, image: str) -> None:
    """Push ``image`` (present on ``host``'s daemon) to the stand-in under its Docker Hub path
    (``hub_path``), through the loopback address dockerd trusts without TLS."""
    target = f"127.0.0.1:{PORT}/{hub_path(image)}"
    for argv in (("tag", image, target), ("push", target)):
        result = docker(host, *argv, timeout=120)
        if result.returncode != 0:
            raise LabError(f"{host.name}: docker {argv[0]} {target} failed: {result.stderr.strip()}")


def stop(host: LabHost) -> None:
    docker(host, "rm", "-f", "-v", CONTAINER)
