"""The lab against the real thing: booted machines with systemd, sshd and dockerd, reached over real SSH."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components.capacity import check_capacity
from components.config import ConfigError, load_stack_config
from components.shared.model import server_name
from lab import Lab, LabError, LabHost, docker, free_subnet, machine_lock, ssh, ssh_command, unavailable
from lab.machines import CGROUP_PARENT, cgroup_pids
from lab.stack import NOT_ON_THE_LAB, PROJECT, servers_section, stack_document, validate_document, write_stack_file
from tests.support.lab_fixture import LAB_HOSTS, LabSession, reap_abandoned_labs
from tools.offline import read_stack_values, reveal, run_program


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_each_machine_is_a_booted_server_of_its_own(lab_session: LabSession) -> None:
    seen = {}
    for host in lab_session.hosts:
        result = ssh(host, 'hostname; id -un; id -Gn; cat /etc/machine-id; systemctl is-system-running; '
                           'ps -o comm= -p 1; findmnt -no SOURCE,FSTYPE /var/lib/docker; docker info --format "{{.ID}} {{.Name}}"\n')
        assert result.returncode in (0, 1), result.stderr  # is-system-running exits 1 when degraded
        hostname, user, groups, machine_id, state, init, disk, info = result.stdout.splitlines()
        daemon_id, daemon_name = info.split()
        assert hostname == host.name == daemon_name
        assert (user, init) == ("samarth-devops", "systemd")
        assert "docker" in groups.split()
        assert state == "running", ssh(host, "systemctl --failed --no-legend\n").stdout
        assert disk.split()[1] == "ext4"  # its own disk, not the image's overlay
        # The same daemon answers through the lab's socket.
        assert docker(host, "info", "--format", "{{.ID}}").stdout.strip() == daemon_id
        seen[host.name] = (daemon_id, machine_id)
    assert len({ids[0] for ids in seen.values()}) == len({ids[1] for ids in seen.values()}) == len(LAB_HOSTS)


def test_the_login_has_passwordless_sudo_and_root_cannot_log_in(lab_session: LabSession) -> None:
    host = lab_session.hosts[0]
    result = ssh(host, "id -u\n", sudo=True)
    assert (result.returncode, result.stdout) == (0, "0\n"), result.stderr
    as_root = subprocess.run([*ssh_command(host, "true")[:-2], f"root@{host.address}", "true"], capture_output=True, text=True)
    assert as_root.returncode == 255 and "Permission denied" in as_root.stderr


def test_a_file_made_on_one_machine_is_not_on_another(lab_session: LabSession) -> None:
    first, second = lab_session.hosts[:2]
    assert ssh(first, "sudo -n touch /etc/only-here\n").returncode == 0
    assert ssh(second, "test ! -e /etc/only-here\n").returncode == 0
    assert ssh(first, "sudo -n rm /etc/only-here\n").returncode == 0


def test_machines_reach_each_other_over_ipv6_and_resolve_names(lab_session: LabSession) -> None:
    master, worker = lab_session.hosts[:2]
    lab_session.lab.add_dns_record("registry.lab.test", master.address)
    result = ssh(worker, f"python3 -c \"import socket; socket.create_connection(('{master.address6}', 22), 2); print('ipv6')\" && "
                         f"getent hosts {master.name} registry.lab.test\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ipv6"
    assert [line.split() for line in lines[1:]] == [[master.address, master.name], [master.address, "registry.lab.test"]]


def test_docker_over_ssh_url_reaches_the_hosts_daemon(lab_session: LabSession, tmp_path: Path) -> None:
    # The Docker provider's way in: `docker -H ssh://...` runs the plain `ssh` client, which reads
    # ~/.ssh/config; stand in for a user whose config Includes the lab's ssh_config.
    wrapper = tmp_path / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {lab_session.lab.ssh_config} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    for host in lab_session.hosts[:2]:
        result = subprocess.run(["docker", "-H", f"ssh://{host.user}@{host.address}", "info", "--format", "{{.Name}}"],
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
    inits = {h.name: lab_session.lab.machine(h.name).init_pid() for h in lab_session.hosts}
    again = lab_session.lab.up(list(LAB_HOSTS))
    assert again == lab_session.hosts
    assert {h.name: docker(h, "info", "--format", "{{.ID}}").stdout for h in again} == before
    assert {h.name: lab_session.lab.machine(h.name).init_pid() for h in again} == inits


def test_stack_file_for_lab_hosts_validates(lab_session: LabSession, tmp_path: Path) -> None:
    # The session's lab hosts play their servers; the other servers keep staging's addresses.
    document = stack_document({h.name: h for h in lab_session.hosts})
    path = tmp_path / "Pulumi.lab.yaml"
    path.write_text(yaml.safe_dump(document))
    values, secure = read_stack_values(path)
    config = load_stack_config(PROJECT, values)
    check_capacity(config, [])
    for name in NOT_ON_THE_LAB:
        assert getattr(config.observability, name).enabled is False, name
    for host in lab_session.hosts:
        server = config.servers[server_name(host.name)]
        assert (server.private_ip, server.ssh_user, server.host_key) == (host.address, "samarth-devops", host.host_key)
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


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab of its own for the verbs that take a machine away (the session's hosts serve other modules)."""
    if reason := unavailable():
        pytest.skip(reason)
    with machine_lock():
        lab = Lab(prefix=f"v{os.getpid()}", subnet=free_subnet(), state_dir=tmp_path_factory.mktemp("small") / "state")
        try:
            lab.up(["solo"])
        except BaseException:
            lab.down()
            raise
    try:
        yield lab
    finally:
        lab.down()


def _boot_of(host: LabHost) -> str:
    """When the machine's PID 1 started (the kernel's boot id is this machine's, shared by all)."""
    result = ssh(host, "ps -o lstart= -p 1; cat /proc/1/stat | cut -d' ' -f22\n")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_reboot_keeps_the_disk_and_the_files(small_lab: Lab) -> None:
    host = small_lab.host("solo")
    assert ssh(host, "sudo -n sh -c 'echo kept > /etc/marker' && docker volume create data >/dev/null "
                     "&& sudo -n sh -c 'echo kept > /var/lib/docker/volumes/data/_data/file' "
                     "&& sudo -n iptables -w -I INPUT -p tcp --dport 9 -j DROP -m comment --comment boot-before\n").returncode == 0
    before = _boot_of(host)
    small_lab.reboot("solo")
    assert _boot_of(host) != before
    result = ssh(host, "cat /etc/marker; sudo -n cat /var/lib/docker/volumes/data/_data/file; systemctl is-system-running\n")
    assert result.stdout.split() == ["kept", "kept", "running"], result.stderr
    # Its network namespace outlives the boot; the packet filter of the boot before does not.
    assert "boot-before" not in ssh(host, "iptables-save\n", sudo=True).stdout


def test_kill_is_a_power_cut_and_up_boots_it_again(small_lab: Lab) -> None:
    machine = small_lab.machine("solo")
    assert machine.init_pid() is not None
    small_lab.kill("solo")
    assert machine.init_pid() is None and not cgroup_pids(machine.name)
    assert [row["machine"] for row in small_lab.status()] == [False]
    host = small_lab.up(["solo"])[0]
    assert ssh(host, "cat /etc/marker\n").stdout == "kept\n"


def test_destroy_takes_machine_and_disk_and_up_makes_a_new_one(small_lab: Lab) -> None:
    old = small_lab.host("solo")
    small_lab.destroy("solo")
    assert small_lab.hosts() == [] and not small_lab.host_dir("solo").exists()
    assert not cgroup_pids(small_lab.machine("solo").name)
    new = small_lab.up(["solo"])[0]
    assert new.address == old.address and new.host_key != old.host_key
    assert ssh(new, "test ! -e /etc/marker && sudo -n test ! -e /var/lib/docker/volumes/data\n").returncode == 0


def test_up_bare_gives_a_fresh_os_without_docker(small_lab: Lab) -> None:
    host = small_lab.up(["fresh"], bare=True)[0]
    result = ssh(host, "command -v docker || echo no docker; systemctl is-system-running; sudo -n id -u\n")
    assert result.stdout.split("\n")[:3] == ["no docker", "running", "0"], result.stderr
    assert [(row["name"], row["dockerd"]) for row in small_lab.status()] == [("solo", True), ("fresh", None)]
    small_lab.destroy("fresh")


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
    machine = lab.machine("solo")
    assert cgroup_pids(machine.name)
    lab.down()
    lab.down()
    assert not cgroup_pids(machine.name)
    assert not any((h / CGROUP_PARENT / machine.name).exists() for h in Path("/sys/fs/cgroup").iterdir())
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
