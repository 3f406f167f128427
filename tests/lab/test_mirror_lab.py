"""The Docker Hub mirror on lab machines, with a plain registry standing in for Docker Hub (lab/hub.py: no lab
machine reaches Docker Hub). Everything else is the lab stack's program as registered: the plan's list of
swarm-master's Docker Hub pulls, the mirror's image, volume and container (its configuration pointing at the
stand-in, ``mirror.remoteUrl``) created on the application machine as the rehearsal creates them, and each
machine's daemon.json script, which restarts its dockerd with ``registry-mirrors``. Then a plain
``docker pull`` of each of those images on swarm-master, and on swarm-node2: both can only succeed through
the mirror; its catalog and log show it served them, and the stand-in's log that each blob left it once."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from components.platform.host.component import DAEMON_JSON
from components.services.mirror.settings import PORT
from components.shared.model import DOCKER_HUB, image_registry
from lab import LabHost, docker, run_command
from lab import hub as lab_hub
from lab.rehearsal_docker import docker_kinds
from lab.rehearsal_images import serve
from lab.rehearsal_kinds import Resource
from lab.stack import stack_document, validate_document
from lab.swarm import lab_program
from tests.support.lab_fixture import LabSession
from tools import plan
from tools.offline import COMMAND, ProgramRun

PULLER = "swarm-master"  # the plan lists its Docker Hub pulls (the backups' restic)
SECOND = "swarm-node2"  # pulls the same images afterwards, from the mirror's cache
MIRROR_RESOURCES = ("hub-mirror-image", "hub-mirror-data", "hub-mirror-container")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode())



def blob_gets(host: LabHost, container: str) -> list[str]:
    """``<repository>@<digest>`` of each blob download the registry ``container`` served (its access log)."""
    log = docker(host, "logs", container)
    return [f"{repo}@{digest}" for repo, digest in
            re.findall(r'"GET /v2/(\S+)/blobs/(sha256:[0-9a-f]+) HTTP/1.1" 200', log.stdout + log.stderr)]


def perform(run: ProgramRun, hosts: list[LabHost], name: str, **replaced: Any) -> dict[str, Any]:
    """Create the registration ``name`` of ``run`` on its lab machine as the rehearsal does; its outputs."""
    (registration,) = [r for r in run.registrations if r.name == name and r.custom]
    provider = run.provider_of(registration)
    resource = Resource(registration.urn, registration.type, registration.name, {**registration.plain_inputs, **replaced},
                        provider.plain_inputs if provider else {})
    kind = docker_kinds({h.address: h for h in hosts})[registration.type]
    _, outputs = kind.create(resource)
    return outputs


@pytest.fixture()
def machines(lab_session: LabSession) -> Iterator[dict[str, LabHost]]:
    names = ("application", PULLER, SECOND)
    hosts = {name: lab_session.host(name) for name in names}
    daemon_json = {name: host.root / DAEMON_JSON.lstrip("/") for name, host in hosts.items()}
    originals = {name: path.read_text() if path.exists() else None for name, path in daemon_json.items()}
    yield hosts
    application = hosts["application"]
    lab_hub.stop(application)
    docker(application, "rm", "-f", "hub-mirror")
    docker(application, "volume", "rm", "-f", "hub-mirror-data")
    for name in (PULLER, SECOND):
        original = originals[name]
        if original is None:
            daemon_json[name].unlink(missing_ok=True)
        else:
            hosts[name].write_file(DAEMON_JSON, original)
        lab_session.lab.restart_dockerd(hosts[name])


def test_the_plans_docker_hub_pulls_go_through_the_mirror_and_leave_the_hub_once(
    lab_session: LabSession, machines: dict[str, LabHost]
) -> None:
    application, puller, second = machines["application"], machines[PULLER], machines[SECOND]
    assignments = {h.name: h for h in lab_session.hosts}
    run = lab_program(assignments)
    config = validate_document(stack_document(assignments))
    standin = lab_hub.start(application)
    assert config.mirror.remote_url == standin

    # What the plan says swarm-master pulls from Docker Hub, through the mirror: on the stand-in.
    pulls, _ = plan.planned_pulls(plan.place(run, config))
    wanted = sorted({p.image for p in pulls if p.server == PULLER and p.source == "Docker Hub, through the mirror"})
    assert wanted and all(image_registry(image) == DOCKER_HUB for image in wanted), pulls
    for reference in wanted:
        serve(application, reference)
        lab_hub.publish(application, reference)

    # The mirror, as the program registers it for the lab stack.
    image = perform(run, lab_session.hosts, "hub-mirror-image")
    perform(run, lab_session.hosts, "hub-mirror-data")
    perform(run, lab_session.hosts, "hub-mirror-container", image=image["imageId"])  # waits for its healthcheck
    mirror = f"http://{application.address}:{PORT}"
    assert _get(f"{mirror}/v2/_catalog")["repositories"] == []

    for host in (puller, second):
        (script,) = [r.plain_inputs["create"] for r in run.of_type(COMMAND) if r.name == f"{host.name}-docker-log-defaults"]
        result = run_command(host, script)
        assert result.returncode == 0, result.stderr
        assert "dockerd restarted" in result.stdout, result.stdout
        assert json.loads((host.root / DAEMON_JSON.lstrip("/")).read_text())["registry-mirrors"] == [mirror]
        info = docker(host, "info", "--format", "{{json .RegistryConfig.Mirrors}}")
        assert json.loads(info.stdout) == [f"{mirror}/"], info.stdout
        again = run_command(host, script)
        assert "already in" in again.stdout, again.stdout  # unchanged: no second restart
        for reference in wanted:  # as on a fresh server
            docker(host, "image", "rm", "-f", reference)

    for reference in wanted:
        pulled = docker(puller, "pull", reference, timeout=180)
        assert pulled.returncode == 0, pulled.stderr  # no Docker Hub here: only the mirror can serve it
    catalog = _get(f"{mirror}/v2/_catalog")["repositories"]
    assert sorted(catalog) == sorted(lab_hub.hub_path(r).split(":", 1)[0] for r in wanted)
    from_hub = blob_gets(application, lab_hub.CONTAINER)
    assert len(set(from_hub)) >= 2 * len(wanted), from_hub  # each image's config and layers

    for reference in wanted:
        pulled = docker(second, "pull", reference, timeout=180)
        assert pulled.returncode == 0, pulled.stderr
    # The second machine's pulls came from the mirror's cache: no blob left the stand-in again, and the
    # mirror served each one to both machines.
    assert blob_gets(application, lab_hub.CONTAINER) == from_hub
    served = blob_gets(application, "hub-mirror")
    assert all(served.count(blob) >= 2 for blob in set(from_hub)), served
    log = docker(application, "logs", "hub-mirror")
    for host in (puller, second):
        assert host.address in log.stdout + log.stderr, f"the mirror's log shows no request from {host.name}"
