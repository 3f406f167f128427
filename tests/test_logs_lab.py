"""Bounded logs on real hosts: the Docker daemon defaults script and Vault's audit rotation, the
program's own rendered scripts run over the lab's SSH (the lab host's daemon.json stands in for
/etc/docker/daemon.json; logrotate runs as its daily job would)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.config import Logs, VaultSettings
from components.host import log_defaults_script
from components.vault import audit_rotation_script
from lab import LabHost, docker, run_command
from lab.busybox import import_busybox
from lab_fixture import LabSession


@pytest.fixture()
def node3(lab_session: LabSession) -> Iterator[LabHost]:
    host = lab_session.host("swarm-node3")
    daemon_json = lab_session.lab.host_dir(host.name) / "daemon.json"
    original = daemon_json.read_text()
    yield host
    docker(host, "rm", "-f", "logs-probe", "vault")
    docker(host, "volume", "rm", "-f", "application-vault-audit")
    if daemon_json.read_text() != original:
        daemon_json.write_text(original)
        lab_session.lab.restart_dockerd(host)


def test_daemon_log_defaults_are_merged_idempotently_and_used(lab_session: LabSession, node3: LabHost) -> None:
    daemon_json = lab_session.lab.host_dir(node3.name) / "daemon.json"
    before = json.loads(daemon_json.read_text())
    logs = Logs.model_validate({"driver": "local", "maxSize": "5m", "maxFile": 2})
    script = log_defaults_script(node3.name, logs, daemon_json=str(daemon_json), restart=False)

    first = run_command(node3, script)
    assert first.returncode == 0, first.stderr
    assert "written to" in first.stdout
    merged = json.loads(daemon_json.read_text())
    assert merged == {**before, "log-driver": "local", "log-opts": {"max-file": "2", "max-size": "5m"}}

    written = daemon_json.stat().st_mtime_ns
    again = run_command(node3, script)
    assert again.returncode == 0, again.stderr
    assert "already in" in again.stdout
    assert daemon_json.stat().st_mtime_ns == written

    # dockerd uses the defaults for containers created after its restart (as compose's are).
    lab_session.lab.restart_dockerd(node3)
    assert docker(node3, "info", "--format", "{{.LoggingDriver}}").stdout.strip() == "local"
    image = import_busybox(node3)
    created = docker(node3, "create", "--name", "logs-probe", image, "/bin/busybox", "true")
    assert created.returncode == 0, created.stderr
    config = json.loads(docker(node3, "inspect", "--format", "{{json .HostConfig.LogConfig}}", "logs-probe").stdout)
    assert config == {"Type": "local", "Config": {"max-file": "2", "max-size": "5m"}}


def test_a_daemon_json_that_is_not_json_is_left_alone(lab_session: LabSession, node3: LabHost, tmp_path: Path) -> None:
    broken = tmp_path / "daemon.json"
    broken.write_text("{ not json")
    result = run_command(node3, log_defaults_script(node3.name, Logs(), daemon_json=str(broken), restart=False))
    assert result.returncode != 0
    assert "is not valid JSON" in result.stderr and "fix it by hand first" in result.stderr
    assert broken.read_text() == "{ not json"


def test_vault_audit_file_rotates_and_vault_is_told_to_reopen_it(lab_session: LabSession, node3: LabHost, tmp_path: Path) -> None:
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

    conf = tmp_path / "samarth-vault-audit"
    script = audit_rotation_script(settings, volume, "vault", "1m", 3, conf=str(conf))
    installed = run_command(node3, script)
    assert installed.returncode == 0, installed.stderr
    assert "size 1M" in conf.read_text() and "rotate 3" in conf.read_text()
    assert "up to date" in run_command(node3, script).stdout

    # What logrotate's daily run does, on the host (its docker CLI reaches the host's daemon).
    rotated = run_command(node3, f"logrotate --state {tmp_path / 'state'} {conf}")
    assert rotated.returncode == 0, rotated.stderr
    for _ in range(20):
        listing = docker(node3, "exec", "vault", "/bin/busybox", "ls", "/vault/logs").stdout.split()
        if "hups" in listing:
            break
        time.sleep(0.5)
    assert f"{settings.audit_file}.1" in listing, listing
    assert settings.audit_file not in listing, listing  # nocreate: Vault opens the new file itself
    assert "hups" in listing, "the container was not sent SIGHUP after the rotation"
