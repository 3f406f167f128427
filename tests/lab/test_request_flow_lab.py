"""The seed's request flow, end to end on lab hosts: Jenkins pushes to the program's registry and deploys
on the swarm; a user's HTTPS request reaches Nginx on the application server, goes to swarm-master and
is answered by the deployed service.

Everything the program contributes is what it registers under mocks for a lab stack (see
lab/request_flow.py for the stand-ins). Known limit of these machines: the swarm's ingress routing
mesh needs the kernel's IPVS, which they lack, so the stack publishes its port in host mode (a global
service, one task per node); the program and the README keep the mesh for real servers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.services.registry import component as registry
from lab import docker, ssh
from lab.request_flow import (
    FLOW_HOSTS,
    Flow,
    bring_up,
    curl,
    deploy,
    flow_program,
    in_namespace,
    listener,
    missing_tools,
    reachable,
)
from lab.swarm import nodes, reset
from tests.support.lab_fixture import LabSession

STACK = "samarth"
SERVICE = "samarth/esamwad-web"


@pytest.fixture
def flow(lab_session: LabSession, tmp_path: Path) -> Iterator[Flow]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"the request flow needs {', '.join(missing)}: apt-get install -y {' '.join(missing)}")
    hosts = {name: lab_session.host(name) for name in FLOW_HOSTS}
    swarm = [h for n, h in hosts.items() if n.startswith("swarm-")]
    reset(swarm)
    started = Flow(hosts, flow_program(hosts, tmp_path), tmp_path)
    try:
        yield started
    finally:
        docker(hosts["swarm-master"], "stack", "rm", STACK)
        started.close()
        reset(swarm)


def _database_on(flow: Flow, server: str) -> tuple[str, int]:
    """An address and port where the program's ``databases`` export says a database of ``server`` listens."""
    address = flow.hosts[server].address
    ends = [end for kinds in flow.run.exports["databases"].values() for end in kinds.values()]
    return next((address, int(end["port"])) for end in ends if end["host"] == address)


def test_push_deploy_and_answer_through_nginx(flow: Flow, lab_session: LabSession) -> None:
    ca = bring_up(flow)

    # The swarm, with every node's registry login through Nginx, each in its own client configuration.
    server, username, password = flow.registry_credentials()
    for name in ("swarm-master", "swarm-node2", "swarm-node3"):
        stored = json.loads((flow.hosts[name].docker_config / "config.json").read_text())
        assert server in stored["auths"], name
    deadline = time.monotonic() + 60
    while sorted(n for n, v in nodes(flow.hosts["swarm-master"]).items() if v["state"] == "ready") != [
            "swarm-master", "swarm-node2", "swarm-node3"]:
        assert time.monotonic() < deadline, nodes(flow.hosts["swarm-master"])
        time.sleep(0.5)

    # Jenkins builds, reads the registry from Vault with the AppRole, logs in, pushes and deploys; the
    # user's request comes from the public network, by the route's host name.
    client = lab_session.lab.public_client("application")
    deployment = deploy(flow, ca, client, STACK, SERVICE, "hello from the swarm\n")
    assert deployment.job.returncode == 0, deployment.job.stderr
    assert password not in deployment.job.stdout + deployment.job.stderr
    assert deployment.answer == "hello from the swarm\n\n200", docker(
        flow.hosts["swarm-master"], "service", "ps", "--no-trunc", f"{STACK}_web").stdout
    route_host = deployment.route_host

    # Every node pulled the image from the program's registry with the credentials the deploy handed over.
    def running() -> list[str]:
        return docker(flow.hosts["swarm-master"], "service", "ps", f"{STACK}_web", "--filter", "desired-state=running",
                      "--format", "{{.Node}} {{.CurrentState}} {{.Image}}").stdout.splitlines()

    deadline = time.monotonic() + 120
    while sorted(t.split()[0] for t in running() if " Running " in t) != ["swarm-master", "swarm-node2", "swarm-node3"]:
        assert time.monotonic() < deadline, docker(flow.hosts["swarm-master"], "service", "ps", "--no-trunc", f"{STACK}_web").stdout
        time.sleep(0.5)
    tasks = running()
    assert all(f"{server}/{SERVICE}:1.0.0" in t for t in tasks)
    service = json.loads(docker(flow.hosts["swarm-master"], "service", "inspect", f"{STACK}_web").stdout)[0]
    networks = {n["Target"] for n in service["Spec"]["TaskTemplate"].get("Networks", [])}
    network_id = docker(flow.hosts["swarm-master"], "network", "inspect", "-f", "{{.Id}}", str(flow.run.exports["swarmNetwork"])).stdout.strip()
    assert network_id in networks, "the stack joins application_default"

    # A name no route serves: Nginx refuses the TLS handshake, as its config says.
    unknown = curl(client, ca, f"unknown.{route_host.split('.', 1)[1]}")
    assert unknown.returncode != 0 and "200" not in unknown.stdout
    assert "ssl_reject_handshake on;" in flow.nginx_config()

    # db2's database ports answer the swarm, never the public side.
    address, db_port = _database_on(flow, "db2")
    with listener(flow.hosts["db2"], address, db_port):
        assert reachable(in_namespace(flow.hosts["swarm-master"], []), address, db_port)
        assert not reachable(["nsenter", f"--net=/var/run/netns/{client.namespace}"], address, db_port)
    # Jenkins pushed as its own registry user; the swarm's is another, in no Vault path.
    assert username == registry.JENKINS_USERNAME
    assert flow.run.exports["registry"] == {"server": server, "username": registry.USERNAME}

    # The deploy key did the deploy, and does nothing else: no other request, no shell, no forwarding,
    # and nothing from another address than Jenkins'.
    master = flow.hosts["swarm-master"]
    target = f"deploy@{master.address}"
    for request in ("docker ps", "docker stack rm samarth", f"deploy {STACK}; id", "id"):
        refused = flow.deploy_key_ssh(master, target, request, stdin="services: {}\n")
        assert refused.returncode != 0 and "refused" in refused.stderr and "uid=" not in refused.stdout, (request, refused)
    pty = flow.deploy_key_ssh(master, "-tt", target, stdin="id\n")
    assert pty.returncode != 0 and "uid=" not in pty.stdout, pty
    forwarding = flow.deploy_key_ssh(master, "-W", "127.0.0.1:22", target)
    assert forwarding.returncode != 0 and "SSH-2.0" not in forwarding.stdout, forwarding
    elsewhere = flow.deploy_key_ssh(flow.hosts["swarm-node2"], target, f"deploy {STACK}", stdin=(flow.root / "stack.yml").read_text())
    assert elsewhere.returncode == 255 and "Permission denied" in elsewhere.stderr, elsewhere
    assert "docker" not in ssh(master, "id -nG deploy\n", sudo=True).stdout.split()
