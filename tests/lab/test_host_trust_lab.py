"""Pinned host keys against real sshd (the lab's): the Docker provider's path is OpenSSH with the
known_hosts and options the program renders, so run exactly that; pulumi-command's own client cannot
run here, so its connections are checked for the key the real sshd presents."""

from __future__ import annotations

import json
import subprocess
from typing import Any, Optional

from lab import LabHost
from lab.swarm import SWARM_HOSTS, lab_program, lab_servers
from tests.support.lab_fixture import LabSession
from tools.hostkeys import choose, parse_keyscan
from tools.offline import ProgramRun, reveal

DOCKER_PROVIDER = "pulumi:providers:docker"


def _program(
    lab: LabSession,
    keys: Optional[dict[str, str]] = None,
    access: Optional[dict[str, Any]] = None,
    on_lab: tuple[str, ...] = SWARM_HOSTS,
) -> ProgramRun:
    """The lab stack with the servers ``on_lab`` on their lab hosts (the others keep staging's)."""
    hosts = {name: lab.host(name) for name in on_lab}
    servers = lab_servers(hosts)
    for name, key in (keys or {}).items():
        servers[name]["hostKey"] = key
    overrides: dict[str, Any] = {"servers": servers}
    if access is not None:
        overrides["access"] = access
    return lab_program(hosts, overrides)


def docker_ssh(run: ProgramRun, host: LabHost) -> subprocess.CompletedProcess[str]:
    """What the Docker CLI's ssh transport runs for this server's provider (docker/cli connhelper:
    ``ssh <sshOpts> -l <user> -p <port> -- <host> docker system dial-stdio``), asking `docker info`
    instead of dialling stdio. ``-F /dev/null``: only the rendered options count, not this machine's."""
    (provider,) = [p for p in run.of_type(DOCKER_PROVIDER) if p.name == f"{host.name}-docker"]
    url = provider.inputs["host"]
    assert url == f"ssh://{host.user}@{host.address}:22"
    options = json.loads(provider.inputs["sshOpts"])
    argv = ["ssh", "-F", "/dev/null", *options, "-l", host.user, "-p", "22", "--", host.address,
            "docker", "info", "--format", "{{.Name}}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_the_docker_path_accepts_the_pinned_key_and_refuses_another(lab_session: LabSession, lab_agent: None) -> None:
    node2, node3 = lab_session.host("swarm-node2"), lab_session.host("swarm-node3")
    right = docker_ssh(_program(lab_session), node2)
    assert right.returncode == 0, right.stderr
    assert right.stdout.strip() == "swarm-node2"

    # swarm-node2 presents its own key, not the one now pinned for it.
    wrong = docker_ssh(_program(lab_session, keys={"swarm-node2": node3.host_key}), node2)
    assert wrong.returncode == 255
    assert "Host key verification failed" in wrong.stderr
    assert wrong.stdout == ""


def test_the_docker_path_checks_the_jump_hosts_key_too(lab_session: LabSession, lab_agent: None) -> None:
    # The swarm-master lab host plays only the jump host here (a jump host that is also a server
    # pins the same key twice: config refuses two different keys for one address).
    master, node2, node3 = (lab_session.host(n) for n in SWARM_HOSTS)
    jump = {"host": master.address, "user": master.user, "port": 22, "hostKey": master.host_key}
    workers = ("swarm-node2", "swarm-node3")

    def accepted_logins() -> int:
        return lab_session.lab.journal(master.name, "ssh").count("Accepted publickey")

    before = accepted_logins()
    through = docker_ssh(_program(lab_session, access={"via": "private", "jumpHost": jump}, on_lab=workers), node2)
    assert through.returncode == 0, through.stderr
    assert through.stdout.strip() == "swarm-node2"
    assert accepted_logins() == before + 1  # it went through the jump host

    wrong_jump = {**jump, "hostKey": node3.host_key}
    refused = docker_ssh(_program(lab_session, access={"via": "private", "jumpHost": wrong_jump}, on_lab=workers), node2)
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr
    assert accepted_logins() == before + 1


def test_every_command_connection_carries_the_key_the_real_sshd_presents(lab_session: LabSession) -> None:
    run = _program(lab_session)
    presented = {}
    for host in (lab_session.host(name) for name in SWARM_HOSTS):  # the hosts _program puts on the lab
        scan = subprocess.run(["ssh-keyscan", "-T", "5", host.address], capture_output=True, text=True, timeout=30)
        presented[host.address] = choose(parse_keyscan(scan.stdout))
        assert presented[host.address] == host.host_key
    commands = [r for r in run.of_type("command:remote:Command")
                if reveal(r.inputs["connection"])["host"] in presented]
    assert {reveal(r.inputs["connection"])["host"] for r in commands} == set(presented)
    assert any(r.name.endswith("-swarm-join") for r in commands)
    for registration in commands:
        connection = reveal(registration.inputs["connection"])
        assert connection["hostKey"] == presented[connection["host"]], registration.name
