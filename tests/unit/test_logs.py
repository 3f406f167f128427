"""Bounded logs: every container the program creates, the Docker daemon's defaults on every server
(compose projects, swarm tasks) and Vault's audit file, all from stack config ``logs``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.config import ConfigError
from tests.support.program_runs import program_run
from tools.offline import PROJECT, ProgramRun, read_stack_values, stack_file

CONTAINER = "docker:index/container:Container"
COMMAND = "command:remote:Command"


def _prod(key: str) -> Any:
    values, _ = read_stack_values(stack_file("prod"))
    return json.loads(values[f"{PROJECT}:{key}"])


def test_every_container_has_bounded_logs(stack_run: ProgramRun) -> None:
    logs = _prod("logs")
    containers = stack_run.of_type(CONTAINER)
    assert containers
    for container in containers:
        inputs = container.plain_inputs
        assert inputs["logDriver"] == logs["driver"], container.name
        assert inputs["logOpts"] == {"max-size": logs["maxSize"], "max-file": str(logs["maxFile"])}, container.name


def test_log_settings_follow_config() -> None:
    run = program_run("prod", overrides={"logs": {"driver": "local", "maxSize": "50m", "maxFile": 7}})
    assert run.error is None, run.error
    for container in run.of_type(CONTAINER):
        assert container.plain_inputs["logDriver"] == "local"
        assert container.plain_inputs["logOpts"] == {"max-size": "50m", "max-file": "7"}
    defaults = [r for r in run.of_type(COMMAND) if r.name.endswith("-docker-log-defaults")]
    assert len(defaults) == 6
    for command in defaults:
        create = command.plain_inputs["create"]
        assert "LOG_DRIVER=local" in create and """LOG_OPTS='{"max-file": "7", "max-size": "50m"}'""" in create


def test_daemon_defaults_on_every_server_before_any_container(prod: ProgramRun) -> None:
    defaults = {r.name.removesuffix("-docker-log-defaults"): r for r in prod.of_type(COMMAND) if r.name.endswith("-docker-log-defaults")}
    assert set(defaults) == set(_prod("servers"))
    for provider in prod.of_type("pulumi:providers:docker"):
        server = provider.name.removesuffix("-docker")
        assert defaults[server].urn in provider.dependencies, provider.name


def test_vault_audit_file_is_rotated(prod: ProgramRun) -> None:
    (rotation,) = [r for r in prod.of_type(COMMAND) if r.name.endswith("-vault-audit-rotation")]
    create = rotation.plain_inputs["create"]
    logs = _prod("logs")
    assert f"MAX_SIZE={logs['auditMaxSize'].upper()}" in create
    assert f"KEEP={logs['auditKeep']}" in create
    assert "VOLUME=application-vault-audit" in create and "CONTAINER=vault" in create


@pytest.mark.parametrize(
    ("logs", "path"),
    [
        ({"driver": "syslog"}, "logs.driver"),
        ({"maxSize": "10 MB"}, "logs.maxSize"),
        ({"maxSize": "0m"}, "logs.maxSize"),
        ({"maxFile": True}, "logs.maxFile"),
        ({"maxFile": 0}, "logs.maxFile"),
        ({"auditKeep": "14"}, "logs.auditKeep"),
        ({"dataRootWarnPercent": 100}, "logs.dataRootWarnPercent"),
    ],
)
def test_bad_log_settings_are_refused(logs: dict[str, Any], path: str) -> None:
    run = program_run("prod", overrides={"logs": logs})
    assert isinstance(run.error, ConfigError), run.error
    assert path in str(run.error)
    assert run.registrations == []
