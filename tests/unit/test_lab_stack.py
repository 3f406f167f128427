"""The lab stack file from six (fake) lab hosts, and the whole program on it under mocks: no daemons.

Lab servers are capped at the machine's size; Sentry and PostHog are never on the lab stack (they need a
newer Docker Compose than Debian 12's and images no lab machine can build).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import lab.stack
from components.services.backups.catalogue import METHODS as BACKUP_METHODS
from components.shared.model import SERVER_NAMES
from lab import LabHost
from lab.stack import validate_document, write_stack_file
from tests.support.program_runs import program_run
from tests.support.rendered import script_values
from tools.offline import ProgramRun, read_stack_values, read_yaml, reveal

COMMAND = "command:remote:Command"
INSTALLS = {"sentry": "observability-sentry-install", "posthog": "observability-posthog-install"}


def fake_host_key(index: int) -> str:
    """A well-formed ed25519 public key (no one holds its private half)."""
    blob = b"".join(len(part).to_bytes(4, "big") + part for part in (b"ssh-ed25519", bytes([index]) * 32))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()}"


def fake_hosts(tmp_path: Path) -> list[LabHost]:
    return [
        LabHost(
            name=name,
            address=f"10.231.0.{10 + index}",
            address6=f"fd4c:6162:ae7:0::{10 + index:x}",
            namespace=f"fake-{name}",
            docker_sock=tmp_path / name / "docker.sock",
            ssh_key_path=tmp_path / "id_ed25519",
            known_hosts=tmp_path / "known_hosts",
            ssh_config=tmp_path / "ssh_config",
            host_key=fake_host_key(index),
            root=tmp_path / name / "root",
        )
        for index, name in enumerate(SERVER_NAMES)
    ]


def lab_run(tmp_path: Path) -> tuple[ProgramRun, str]:
    path = write_stack_file(fake_hosts(tmp_path), tmp_path / "Pulumi.lab.yaml")
    values, secure = read_stack_values(path)
    assert secure == []
    return program_run("lab", values=values), path.read_text()


def installed(run: ProgramRun) -> set[str]:
    names = {r.name for r in run.of_type(COMMAND)}
    return {service for service, command in INSTALLS.items() if command in names}


def test_the_whole_program_accepts_the_lab_stack_on_this_machine(tmp_path: Path) -> None:
    run, text = lab_run(tmp_path)
    assert run.error is None, run.error
    servers = {reveal(r.inputs["connection"])["host"] for r in run.of_type(COMMAND) if r.name.endswith("-preflight")}
    assert servers == {h.address for h in fake_hosts(tmp_path)}
    assert installed(run) == set()
    for name, reason in lab.stack.NOT_ON_THE_LAB.items():
        assert f"# {name} is disabled: {reason}.\n" in text


@pytest.mark.parametrize("size", [(65536, 8), (24576, 2), (8192, 2)])
def test_the_lab_stack_fits_any_machine_and_caps_the_declared_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    monkeypatch.setattr(lab.stack, "machine_size", lambda: size)
    run, _ = lab_run(tmp_path)
    assert run.error is None, run.error
    assert installed(run) == set()
    # Capped at the machine's size (staging declares 32768 MiB), as the preflight will compare.
    preflight = run.named(COMMAND, "application-preflight").inputs["create"]
    assert script_values(preflight)["DECLARED_MIB"] == str(min(size[0], 32768))


def test_the_lab_firewall_lets_in_the_machine_running_pulumi(tmp_path: Path) -> None:
    """Pulumi runs in the lab's root namespace: its bridge address must keep SSH and the providers' ports."""
    path = write_stack_file(fake_hosts(tmp_path), tmp_path / "Pulumi.lab.yaml", pulumi_from="10.231.0.1")
    run = program_run("lab", values=read_stack_values(path)[0])
    assert run.error is None, run.error
    for row in run.exports["firewall"]:
        if row["service"] in ("SSH", "Vault API", "MinIO S3 API"):
            assert "10.231.0.1/32" in {n for networks in row["from"].values() for n in networks}, row


def test_the_lab_timers_run_every_minute_and_the_renewal_without_delay(tmp_path: Path) -> None:
    """A lab test can watch systemd fire the renewal and backup timers soon after the deploy (lab/stack.py)."""
    path = write_stack_file(fake_hosts(tmp_path), tmp_path / "Pulumi.lab.yaml")
    config = validate_document(read_yaml(path))
    acme = config.edge.tls.acme
    assert acme is not None and (acme.renewal_schedule, acme.renewal_random_delay) == ("minutely", "0")
    assert {method: config.backups.schedule(method) for method in BACKUP_METHODS} == dict.fromkeys(BACKUP_METHODS, "minutely")
    run = program_run("lab", values=read_stack_values(path)[0])
    assert run.error is None, run.error
    timer = run.named(COMMAND, "nginx-certificates-timer").inputs["create"]
    assert "\nOnCalendar=minutely\nRandomizedDelaySec=0\n" in script_values(timer)["TIMER_UNIT"]
    installs = [r for r in run.of_type(COMMAND) if r.name.startswith("backups-") and r.name.endswith("-install")]
    targets = [line.split() for r in installs for line in script_values(reveal(r.inputs["create"]))["TARGETS"].splitlines()]
    assert len(installs) == 4 and targets and {target[2] for target in targets} == {"minutely"}
    assert {script_values(reveal(r.inputs["create"]))["RANDOM_DELAY"] for r in installs} == {"0"}
    # Staging itself keeps its schedules.
    staging = validate_document(read_yaml(lab.stack.STAGING))
    assert staging.backups.schedule("postgres") == "hourly" and staging.edge.tls.acme is not None
    assert staging.edge.tls.acme.renewal_schedule == "*-*-* 04,16:00:00"
    assert staging.backups.random_delay == "300"
