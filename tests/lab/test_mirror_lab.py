"""The Docker Hub mirror on lab machines, with a plain registry standing in for Docker Hub (no lab machine
reaches Docker Hub): the program's mirror configuration (``mirror.remoteUrl`` pointed at the stand-in) in
the lab's registry image on the application machine, published on its address as the component publishes
it; the program's daemon.json script on two other machines, which restarts their dockerd with
``registry-mirrors``; then a plain ``docker pull`` of a Docker Hub reference on each. The pull can only
succeed through the mirror; the mirror's catalog and log show it served both, and the stand-in's log that
the image's blobs left it once."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.platform.host.component import DAEMON_JSON, log_defaults_script
from components.platform.host.settings import Logs
from components.services.mirror.component import CONFIG_PATH, render_config
from components.services.mirror.settings import CONTAINER_PORT, PORT, STORAGE_PATH, MirrorSettings
from lab import LabHost, docker, run_command
from lab import hub as lab_hub
from lab.busybox import import_busybox
from tests.support.lab_fixture import LabSession

PROBE = "samarth-probe:1"  # a Docker Hub reference: docker.io/library/samarth-probe:1
CLIENTS = ("swarm-node2", "swarm-node3")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _blob_gets(host: LabHost, container: str) -> list[str]:
    """The digest of each blob download the registry ``container`` served (its access log)."""
    log = docker(host, "logs", container)
    return re.findall(r'"GET /v2/library/samarth-probe/blobs/(sha256:[0-9a-f]+) HTTP/1.1" 200', log.stdout + log.stderr)


@pytest.fixture()
def hub(lab_session: LabSession, tmp_path: Path) -> Iterator[tuple[LabHost, list[LabHost]]]:
    application = lab_session.host("application")
    clients = [lab_session.host(name) for name in CLIENTS]
    originals = {}
    for host in clients:
        path = host.root / DAEMON_JSON.lstrip("/")
        originals[host.name] = path.read_text() if path.exists() else None
    yield application, clients
    lab_hub.stop(application)
    docker(application, "rm", "-f", "hub-mirror")
    docker(application, "volume", "rm", "-f", "hub-mirror-data")
    for host in clients:
        docker(host, "image", "rm", "-f", PROBE)
        path = host.root / DAEMON_JSON.lstrip("/")
        original = originals[host.name]
        if original is None:
            path.unlink(missing_ok=True)
        else:
            host.write_file(DAEMON_JSON, original)
        lab_session.lab.restart_dockerd(host)


def test_docker_hub_pulls_go_through_the_mirror_and_leave_the_hub_once(hub: tuple[LabHost, list[LabHost]], tmp_path: Path) -> None:
    application, clients = hub
    # The stand-in for Docker Hub: a plain registry holding library/samarth-probe:1.
    standin = lab_hub.start(application)
    lab_hub.publish(application, import_busybox(application), PROBE)

    # The mirror as the component runs it: the program's config (remoteUrl: the stand-in), uploaded root-only
    # into the container whose command names it, its port published on the machine's address.
    settings = MirrorSettings.model_validate({"remoteUrl": standin})
    config = tmp_path / "config.yml"
    config.write_text(render_config(settings, "s" * 48))
    config.chmod(0o400)
    created = docker(
        application, "create", "--name", "hub-mirror", "-p", f"{application.address}:{PORT}:{CONTAINER_PORT}",
        "-v", f"hub-mirror-data:{STORAGE_PATH}", lab_hub.REGISTRY, CONFIG_PATH,
    )
    assert created.returncode == 0, created.stderr
    assert docker(application, "cp", str(config), f"hub-mirror:{CONFIG_PATH}").returncode == 0
    assert docker(application, "start", "hub-mirror").returncode == 0
    mirror = f"http://{application.address}:{PORT}"
    lab_hub.answers(mirror)
    assert json.loads(_get(f"{mirror}/v2/_catalog"))["repositories"] == []

    for host in clients:
        # The program's daemon.json script, as each server's Host registers it with the mirror.
        result = run_command(host, log_defaults_script(host.name, Logs(), registry_mirrors=[mirror]))
        assert result.returncode == 0, result.stderr
        assert "dockerd restarted" in result.stdout, result.stdout
        daemon_json = json.loads((host.root / DAEMON_JSON.lstrip("/")).read_text())
        assert daemon_json["registry-mirrors"] == [mirror]
        info = docker(host, "info", "--format", "{{json .RegistryConfig.Mirrors}}")
        assert json.loads(info.stdout) == [f"{mirror}/"], info.stdout
        # Idempotent: the same mirrors again change nothing and restart nothing.
        again = run_command(host, log_defaults_script(host.name, Logs(), registry_mirrors=[mirror]))
        assert "already in" in again.stdout, again.stdout

    first, second = clients
    pulled = docker(first, "pull", PROBE, timeout=120)
    assert pulled.returncode == 0, pulled.stderr  # no Docker Hub here: only the mirror can have served it
    assert "library/samarth-probe" in json.loads(_get(f"{mirror}/v2/_catalog"))["repositories"]
    from_hub = _blob_gets(application, lab_hub.CONTAINER)
    blobs = set(from_hub)
    assert len(blobs) >= 2, from_hub  # the image's config and its layer

    pulled = docker(second, "pull", PROBE, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    # The second server's pull came from the mirror's cache: no blob left the stand-in again, and the
    # mirror served each blob to both machines.
    assert _blob_gets(application, lab_hub.CONTAINER) == from_hub
    served = _blob_gets(application, "hub-mirror")
    assert all(served.count(blob) >= 2 for blob in blobs), served
    mirror_log = docker(application, "logs", "hub-mirror")
    for host in clients:
        assert host.address in mirror_log.stdout + mirror_log.stderr, f"the mirror's log shows no request from {host.name}"
    for host in clients:
        digest = docker(host, "image", "inspect", "--format", "{{index .RepoDigests 0}}", PROBE)
        assert digest.stdout.startswith("samarth-probe@sha256:"), digest.stdout
