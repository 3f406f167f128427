"""The lab against the real thing: namespaces, sshd and dockerd, reached over real SSH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from components.capacity import check_capacity
from components.config import ConfigError, load_stack_config, server_name
from lab import Lab, LabError, docker, free_subnet, machine_lock, ssh, unavailable
from lab.stack import PROJECT, leave_out_what_does_not_fit, servers_section, stack_document, validate_document, write_stack_file
from lab_fixture import LAB_HOSTS, LabSession, reap_abandoned_labs
from tools.offline import read_stack_values, reveal, run_program


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_each_host_reaches_its_own_daemon_over_ssh(lab_session: LabSession) -> None:
    seen = {}
    for host in lab_session.hosts:
        result = ssh(host, 'hostname; echo "$DOCKER_HOST"; docker info --format "{{.ID}} {{.Name}}"\n')
        assert result.returncode == 0, result.stderr
        hostname, docker_host, info = result.stdout.splitlines()
        daemon_id, daemon_name = info.split()
        assert hostname == host.name == daemon_name
        assert docker_host == host.docker_host
        # The same daemon answers through the host's local socket.
        assert docker(host, "info", "--format", "{{.ID}}").stdout.strip() == daemon_id
        seen[host.name] = daemon_id
    assert len(set(seen.values())) == len(LAB_HOSTS)


def test_docker_over_ssh_url_reaches_the_hosts_daemon(lab_session: LabSession, tmp_path: Path) -> None:
    # The Docker provider's way in: `docker -H ssh://...` runs the plain `ssh` client, which reads
    # ~/.ssh/config; stand in for a user whose config Includes the lab's ssh_config.
    wrapper = tmp_path / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {lab_session.lab.ssh_config} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    for host in lab_session.hosts[:2]:
        result = subprocess.run(["docker", "-H", f"ssh://root@{host.address}", "info", "--format", "{{.Name}}"],
                                capture_output=True, text=True, env=env, timeout=60)
        assert (result.returncode, result.stdout.strip()) == (0, host.name), result.stderr


def test_hosts_reach_each_other_on_the_lab_subnet(lab_session: LabSession) -> None:
    master, *workers = lab_session.hosts
    for worker in workers:
        result = ssh(worker, f"ip -4 -o addr show eth0; python3 -c \"import socket; socket.create_connection(('{master.address}', 22), 2); print('reachable')\"\n")
        assert result.returncode == 0, result.stderr
        assert f"inet {worker.address}/" in result.stdout
        assert "reachable" in result.stdout


def test_ssh_script_failure_is_reported(lab_session: LabSession) -> None:
    result = ssh(lab_session.hosts[0], "echo before; exit 7\n")
    assert (result.returncode, result.stdout) == (7, "before\n")


def test_up_again_changes_nothing(lab_session: LabSession) -> None:
    before = {h.name: docker(h, "info", "--format", "{{.ID}}").stdout for h in lab_session.hosts}
    pids = {h.name: (lab_session.lab.host_dir(h.name) / "docker.pid").read_text() for h in lab_session.hosts}
    again = lab_session.lab.up(list(LAB_HOSTS))
    assert again == lab_session.hosts
    assert {h.name: docker(h, "info", "--format", "{{.ID}}").stdout for h in again} == before
    assert {h.name: (lab_session.lab.host_dir(h.name) / "docker.pid").read_text() for h in again} == pids


def test_stack_file_for_lab_hosts_validates(lab_session: LabSession, tmp_path: Path) -> None:
    # The session's lab hosts play their servers; the other servers keep staging's addresses.
    document = stack_document({h.name: h for h in lab_session.hosts})
    leave_out_what_does_not_fit(document)  # as `python -m lab up` does, for this machine's size
    path = tmp_path / "Pulumi.lab.yaml"
    path.write_text(yaml.safe_dump(document))
    values, secure = read_stack_values(path)
    config = load_stack_config(PROJECT, values)
    check_capacity(config, [])
    for host in lab_session.hosts:
        server = config.servers[server_name(host.name)]
        assert (server.private_ip, server.ssh_user, server.host_key) == (host.address, "root", host.host_key)
    assert config.access.jump_host is None
    assert secure == []
    # The whole program accepts it (capacity included), and the hosts' SSH host keys are pinned.
    run = run_program("lab", values=values)
    assert run.error is None, run.error
    connections = [reveal(r.inputs["connection"]) for r in run.of_type("command:remote:Command")
                   if r.name.endswith("-preflight")]
    pinned = {c["host"]: c.get("hostKey") for c in connections}
    for host in lab_session.hosts:
        assert pinned[host.address] == host.host_key


def test_stack_file_needs_six_hosts(lab_session: LabSession, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no host for: db1$"):
        write_stack_file(lab_session.hosts, tmp_path / "Pulumi.lab.yaml")
    assert not (tmp_path / "Pulumi.lab.yaml").exists()


def test_two_servers_on_one_host_are_refused(lab_session: LabSession) -> None:
    master = lab_session.hosts[0]
    document = stack_document({"swarm-master": master, "swarm-node2": master})
    with pytest.raises(ConfigError, match=r"servers\.swarm-node2\.privateIp: .* already the private IP of swarm-master"):
        validate_document(document)


def test_lab_host_config_keeps_staging_size_within_the_machine(lab_session: LabSession) -> None:
    master = lab_session.hosts[0]
    servers = servers_section({"swarm-master": master}, {"swarm-master": {"memoryMib": 10**7, "cpus": 10**4}})
    assert servers["swarm-master"]["memoryMib"] < 10**7
    assert servers["swarm-master"]["cpus"] < 10**4


def test_bad_prefix_and_public_subnet_are_refused() -> None:
    with pytest.raises(LabError, match="prefix"):
        Lab(prefix="much-too-long-prefix")
    with pytest.raises(LabError, match="not a private range"):
        Lab(prefix="x", subnet="8.8.8.0/24")


def test_down_leaves_nothing_and_runs_twice(tmp_path: Path) -> None:
    if reason := unavailable():
        pytest.skip(reason)
    state = tmp_path / "state"
    with machine_lock():
        lab = Lab(prefix=f"d{os.getpid()}", subnet=free_subnet(), state_dir=state)
        try:
            lab.up(["solo"])
        except BaseException:
            lab.down()
            raise
    assert lab.namespace("solo") in netns_names()
    lab.down()
    lab.down()
    assert lab.namespace("solo") not in netns_names()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert lab.bridge not in links and f"{lab.prefix}-v" not in links
    mounts = Path("/proc/self/mounts").read_text()
    assert str(state) not in mounts and f"/{lab.prefix}/" not in mounts
    assert not lab.run_dir("solo").exists()
    assert not state.exists()
    assert lab.status() == []
    assert subprocess.run(["pgrep", "-f", str(state)], capture_output=True).returncode == 1


def test_a_lab_whose_test_run_died_is_reaped(tmp_path: Path) -> None:
    if reason := unavailable():
        pytest.skip(reason)
    state = tmp_path / "state"
    dead_owner = Path("/proc/sys/kernel/pid_max").read_text().strip() + "1"  # never a live pid
    with machine_lock():
        lab = Lab(prefix=f"d{dead_owner}", subnet=free_subnet(), state_dir=state)
        try:
            lab.up(["orphan"])
        except BaseException:
            lab.down()
            raise
        reap_abandoned_labs()
    assert lab.namespace("orphan") not in netns_names()
    assert not state.exists() and not lab.run_dir("orphan").exists()
