"""Bounded logs on real servers: the Docker daemon defaults script and Vault's audit rotation, the
program's own rendered scripts run over the lab's SSH as the stacks' non-root login on a lab machine. The
defaults go into the machine's own /etc/docker/daemon.json and the script restarts its dockerd with
systemctl, as on a server; the rotation rule goes into /etc/logrotate.d and runs from Debian's daily
logrotate service, as its timer starts it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.platform.host.component import DAEMON_JSON, log_defaults_script
from components.platform.host.settings import Logs
from components.services.vault.component import AUDIT_LOGROTATE_CONF, audit_rotation_script
from components.services.vault.settings import VaultSettings
from lab import LabHost, docker, run_command, ssh
from lab.busybox import import_busybox
from tests.support.lab_fixture import LabSession


def on_machine(host: LabHost, path: str) -> Path:
    """``path`` of the machine, as this machine sees it."""
    return host.root / path.lstrip("/")


def unit_run(host: LabHost, unit: str) -> str:
    """The id of ``unit``'s current run on ``host``: it changes each time systemd starts the unit."""
    result = run_command(host, f"systemctl show --property=InvocationID --value {unit}")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture()
def node3(lab_session: LabSession) -> Iterator[LabHost]:
    host = lab_session.host("swarm-node3")
    daemon_json = on_machine(host, DAEMON_JSON)
    original = daemon_json.read_text() if daemon_json.exists() else None
    dockerd = unit_run(host, "docker.service")
    yield host
    docker(host, "rm", "-f", "logs-probe", "vault")
    docker(host, "volume", "rm", "-f", "application-vault-audit")
    on_machine(host, AUDIT_LOGROTATE_CONF).unlink(missing_ok=True)
    if original is None:
        daemon_json.unlink(missing_ok=True)
    else:
        host.write_file(DAEMON_JSON, original)
    if unit_run(host, "docker.service") != dockerd:  # it runs with what the test wrote
        lab_session.lab.restart_dockerd(host)


def test_daemon_log_defaults_are_merged_idempotently_and_used(node3: LabHost) -> None:
    daemon_json = on_machine(node3, DAEMON_JSON)
    # A setting of the server's own, which the merge keeps and dockerd still uses afterwards.
    node3.write_file(DAEMON_JSON, json.dumps({"labels": ["samarth-lab=logs"]}, indent=2) + "\n")
    before = json.loads(daemon_json.read_text())
    logs = Logs.model_validate({"driver": "local", "maxSize": "5m", "maxFile": 2})
    script = log_defaults_script(node3.name, logs)  # as the program registers it for these logs settings
    dockerd = unit_run(node3, "docker.service")

    first = run_command(node3, script)
    assert first.returncode == 0, first.stderr
    assert "written to" in first.stdout and "dockerd restarted" in first.stdout, first.stdout
    merged = json.loads(daemon_json.read_text())
    assert merged == {**before, "log-driver": "local", "log-opts": {"max-file": "2", "max-size": "5m"}}
    assert daemon_json.stat().st_uid == 0
    restarted = unit_run(node3, "docker.service")
    assert restarted != dockerd, "the script did not restart dockerd after changing its defaults"

    written = daemon_json.stat().st_mtime_ns
    again = run_command(node3, script)
    assert again.returncode == 0, again.stderr
    assert "already in" in again.stdout
    assert daemon_json.stat().st_mtime_ns == written
    assert unit_run(node3, "docker.service") == restarted, "dockerd was restarted although nothing changed"

    # dockerd uses the defaults (and the setting it had) for containers created after its restart, as
    # compose's are.
    info = docker(node3, "info", "--format", "{{.LoggingDriver}} {{json .Labels}}").stdout.split(" ", 1)
    assert info[0] == "local" and "samarth-lab=logs" in json.loads(info[1]), info
    image = import_busybox(node3)
    created = docker(node3, "create", "--name", "logs-probe", image, "/bin/busybox", "true")
    assert created.returncode == 0, created.stderr
    config = json.loads(docker(node3, "inspect", "--format", "{{json .HostConfig.LogConfig}}", "logs-probe").stdout)
    assert config == {"Type": "local", "Config": {"max-file": "2", "max-size": "5m"}}


def test_a_daemon_json_that_is_not_json_is_left_alone(node3: LabHost) -> None:
    daemon_json = node3.write_file(DAEMON_JSON, "{ not json")
    dockerd = unit_run(node3, "docker.service")
    result = run_command(node3, log_defaults_script(node3.name, Logs()))
    assert result.returncode != 0
    assert "is not valid JSON" in result.stderr and "fix it by hand first" in result.stderr, result.stderr
    assert daemon_json.read_text() == "{ not json"
    # dockerd was not restarted onto a file it cannot read.
    assert unit_run(node3, "docker.service") == dockerd
    assert docker(node3, "info", "--format", "{{.ID}}").returncode == 0


def test_vault_audit_file_rotates_and_vault_is_told_to_reopen_it(node3: LabHost) -> None:
    image = import_busybox(node3)
    settings = VaultSettings()
    volume = "application-vault-audit"
    assert docker(node3, "volume", "create", volume).returncode == 0
    # A stand-in for Vault: records each SIGHUP it gets, as Vault reopens its audit file on SIGHUP.
    probe = "trap 'echo reopened >> /vault/logs/hups' HUP; while :; do sleep 1; done"
    started = docker(node3, "run", "-d", "--name", "vault", "-v", f"{volume}:/vault/logs", image, "/bin/busybox", "sh", "-c", probe)
    assert started.returncode == 0, started.stderr
    fill = f"/bin/busybox dd if=/dev/zero of=/vault/logs/{settings.audit_file} bs=1024 count=2048 2>/dev/null"
    assert docker(node3, "exec", "vault", "/bin/busybox", "sh", "-c", fill).returncode == 0

    script = audit_rotation_script(settings, volume, "vault", "1m", 3)
    installed = run_command(node3, script)
    assert installed.returncode == 0, installed.stderr
    rule = on_machine(node3, AUDIT_LOGROTATE_CONF).read_text()
    assert "size 1M" in rule and "rotate 3" in rule
    assert "up to date" in run_command(node3, script).stdout

    # What the server's daily run does: Debian's logrotate timer starts logrotate.service, which rotates
    # everything /etc/logrotate.conf includes, as root, under the service's sandbox.
    timer = run_command(node3, "systemctl is-enabled logrotate.timer")
    assert timer.stdout.strip() == "enabled", timer.stdout + timer.stderr
    rotated = ssh(node3, "systemctl start logrotate.service", sudo=True)
    assert rotated.returncode == 0, rotated.stderr
    for _ in range(20):
        listing = docker(node3, "exec", "vault", "/bin/busybox", "ls", "/vault/logs").stdout.split()
        if "hups" in listing:
            break
        time.sleep(0.5)
    assert f"{settings.audit_file}.1" in listing, listing
    assert settings.audit_file not in listing, listing  # nocreate: Vault opens the new file itself
    assert "hups" in listing, "the container was not sent SIGHUP after the rotation"
