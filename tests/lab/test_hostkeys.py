"""tools.hostkeys: scanning real sshd (the lab's), fingerprints as OpenSSH prints them, the round-trip
write into a stack file, and the refusal to replace a changed key."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import yaml

from components.platform.host.settings import EXAMPLE_HOST_KEY_MARK
from lab import LabHost
from lab.machines import SSH_USER
from tests.support.lab_fixture import LabSession
from tools.hostkeys import choose, fingerprint, parse_keyscan
from tools.offline import ROOT

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBletDEp7zgwBparP3LXuBVpK2APcX4NQRNsVwgaeq5W"
ECDSA = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg="
RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB"
SERVERS = ("application", "db1", "db2", "swarm-master", "swarm-node2", "swarm-node3")


def test_fingerprint_is_what_ssh_keygen_prints(tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    key = " ".join((tmp_path / "k.pub").read_text().split()[:2])
    listed = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True, check=True)
    assert fingerprint(key) == listed.stdout.split()[1]


def test_ed25519_is_pinned_where_offered_else_ecdsa_then_rsa() -> None:
    assert choose([RSA, ECDSA, ED25519]) == ED25519
    assert choose([RSA, ECDSA]) == ECDSA
    assert choose([RSA]) == RSA
    assert choose([]) is None
    output = f"# 10.0.0.5:22 SSH-2.0-OpenSSH_9.2\n10.0.0.5 {RSA}\n[10.0.0.6]:2222 {ED25519}\n"
    assert parse_keyscan(output) == [RSA, ED25519]


def test_help_and_a_missing_stack_are_clean(tmp_path: Path) -> None:
    helped = subprocess.run([sys.executable, "-m", "tools.hostkeys", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert helped.returncode == 0 and "--replace SERVER" in helped.stdout and "--yes" in helped.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "tools.hostkeys", "--stack", "nowhere", "--directory", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("hostkeys: ") and "Pulumi.nowhere.yaml does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_bad_server_entry_is_reported_before_anything_is_scanned(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text("config:\n  samarth-infra:servers:\n    db1: {privateIp: 8.8.8.8, memoryMib: 1024, cpus: 1}\n")
    result = subprocess.run(
        [sys.executable, "-m", "tools.hostkeys", "--stack", "bad", "--directory", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "servers.db1.privateIp: 8.8.8.8 is not a private address" in result.stderr
    assert "servers.application: missing" in result.stderr


# --- against the lab's real sshd ----------------------------------------------------------------

HEADER = "# A stack for the test: comments and layout must survive the edit.\n"


def write_stack(path: Path, addresses: dict[str, str], keys: dict[str, str], jump: dict | None = None) -> None:
    servers = {}
    for name in SERVERS:
        server = {"privateIp": addresses[name], "sshUser": SSH_USER, "sshPort": 22, "memoryMib": 1024, "cpus": 1}
        if name in keys:
            server["hostKey"] = keys[name]
        servers[name] = server
    access: dict = {"via": "private"}
    if jump is not None:
        access["jumpHost"] = jump
    document = {"config": {"samarth-infra:access": access, "samarth-infra:servers": servers,
                           "samarth-infra:swarm": {"workers": ["swarm-node2", "swarm-node3"]}}}
    body = yaml.safe_dump(document, sort_keys=False).replace("  samarth-infra:servers:", "  # the six servers\n  samarth-infra:servers:")
    path.write_text(HEADER + body)


def assignments(lab: LabSession) -> dict[str, LabHost]:
    """Six servers on the lab's three hosts (the tool scans each; it does not need distinct hosts)."""
    hosts = lab.hosts
    return {name: hosts[index % len(hosts)] for index, name in enumerate(SERVERS)}


def pinned(path: Path) -> dict[str, str]:
    servers = yaml.safe_load(path.read_text())["config"]["samarth-infra:servers"]
    return {name: server.get("hostKey", "") for name, server in servers.items()}


def run_tool(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "tools.hostkeys", "--stack", "t", "--directory", str(tmp_path), "--timeout", "5", *args],
        capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=120,
    )
    return result.returncode, result.stdout, result.stderr


def test_scan_prints_fingerprints_and_writes_the_real_keys(lab_session: LabSession, tmp_path: Path) -> None:
    servers = assignments(lab_session)
    stack = tmp_path / "Pulumi.t.yaml"
    write_stack(stack, {n: h.address for n, h in servers.items()}, {"db2": f"{ED25519} {EXAMPLE_HOST_KEY_MARK}"})

    code, out, err = run_tool(tmp_path, "--yes")
    assert code == 0, err
    assert pinned(stack) == {name: host.host_key for name, host in servers.items()}
    text = stack.read_text()
    assert text.startswith(HEADER) and "  # the six servers\n" in text
    for host in lab_session.hosts:
        listed = subprocess.run(
            ["ssh-keygen", "-lf", str(host.host_key_file)],
            capture_output=True, text=True, check=True,
        )
        assert listed.stdout.split()[1] in out
    assert "replaces the example key" in out

    again_code, again_out, _ = run_tool(tmp_path)
    assert again_code == 0 and "nothing to write" in again_out


def test_a_changed_key_is_refused_loudly_unless_replaced(lab_session: LabSession, tmp_path: Path) -> None:
    servers = assignments(lab_session)
    stack = tmp_path / "Pulumi.t.yaml"
    keys = {name: host.host_key for name, host in servers.items()}
    wrong = next(h.host_key for h in lab_session.hosts if h.host_key != keys["db1"])
    write_stack(stack, {n: h.address for n, h in servers.items()}, {**keys, "db1": wrong})
    before = stack.read_text()

    code, _, err = run_tool(tmp_path, "--yes")
    assert code == 2
    assert "A PINNED SSH HOST KEY HAS CHANGED" in err and "db1 (" in err
    assert f"pinned {fingerprint(wrong)}, now presents {fingerprint(keys['db1'])}" in err
    assert "python -m tools.hostkeys --stack t --replace db1" in err
    assert stack.read_text() == before

    code, out, err = run_tool(tmp_path, "--yes", "--replace", "db1")
    assert code == 0, err
    assert "REPLACING the pinned key of db1" in out
    assert pinned(stack)["db1"] == keys["db1"]


def accepted_logins(lab: LabSession, host: LabHost) -> int:
    return lab.lab.journal(host.name, "ssh").count("Accepted publickey")


def test_through_a_jump_host_the_scan_runs_there_and_checks_its_key(
    lab_session: LabSession, lab_agent: None, tmp_path: Path
) -> None:
    servers = assignments(lab_session)
    master = lab_session.host("swarm-master")
    stack = tmp_path / "Pulumi.t.yaml"
    addresses = {n: h.address for n, h in servers.items()}
    write_stack(stack, addresses, {}, jump={"host": master.address, "user": master.user, "port": 22})

    logins = accepted_logins(lab_session, master)
    code, _, err = run_tool(tmp_path, "--yes")
    assert code == 0, err
    assert accepted_logins(lab_session, master) >= logins + len(SERVERS)
    document = yaml.safe_load(stack.read_text())["config"]
    assert document["samarth-infra:access"]["jumpHost"]["hostKey"] == master.host_key
    assert pinned(stack) == {name: host.host_key for name, host in servers.items()}

    # A jump host presenting another key than the pinned one: refused before anything is scanned through it.
    other = lab_session.host("swarm-node2").host_key
    write_stack(stack, addresses, {}, jump={"host": master.address, "user": master.user, "port": 22, "hostKey": other})
    logins = accepted_logins(lab_session, master)
    code, _, err = run_tool(tmp_path, "--yes")
    assert code == 2 and "jumpHost (" in err and "--replace jumpHost" in err
    assert accepted_logins(lab_session, master) == logins


def test_without_yes_it_asks_and_writes_only_on_a_yes(lab_session: LabSession, tmp_path: Path) -> None:
    servers = assignments(lab_session)
    stack = tmp_path / "Pulumi.t.yaml"
    write_stack(stack, {n: h.address for n, h in servers.items()}, {})
    before = stack.read_text()

    # No terminal and no --yes: nothing is written, and it says how to go on.
    code, _, err = run_tool(tmp_path)
    assert code == 2 and "compare the fingerprints, then run again with --yes" in err
    assert stack.read_text() == before

    def answered(answer: str) -> tuple[int, str]:
        """The tool on a terminal (a pty), answering its question with ``answer``."""
        argv = [sys.executable, "-m", "tools.hostkeys", "--stack", "t", "--directory", str(tmp_path), "--timeout", "5"]
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(ROOT)
            os.execv(sys.executable, argv)
        output = b""
        deadline = time.monotonic() + 120
        while b"[y/N]" not in output:
            ready, _, _ = select.select([fd], [], [], 1)
            chunk = os.read(fd, 4096) if ready else b"-"
            assert chunk and time.monotonic() < deadline, f"the tool did not ask: {output!r}"
            output += chunk if ready else b""
        os.write(fd, f"{answer}\n".encode())
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), output.decode(errors="replace")

    code, output = answered("n")
    assert code == 1 and "Nothing written." in output and "Write 6 key(s) to Pulumi.t.yaml?" in output
    assert stack.read_text() == before
    code, output = answered("y")
    assert code == 0, output
    assert pinned(stack) == {name: host.host_key for name, host in servers.items()}
