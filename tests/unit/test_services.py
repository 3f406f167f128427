"""A backing service is one module plus one line in ``components.assembly.BACKING``: a toy service added so
gets its firewall opening, its port checked against every other listener, its Vault path and its exports,
with nothing else changed. And what every service declares is what the program builds."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest

from components import assembly
from components.config import ConfigError, StackConfig
from components.shared.service import Credentials, Declaration, Service
from tests.support import toy_service
from tools.offline import ProgramRun, run_program


@pytest.fixture
def with_toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(assembly, "BACKING", (*assembly.BACKING, toy_service))
    yield


def _secrets(run: ProgramRun) -> dict[str, set[str]]:
    return {
        r.inputs["name"].removeprefix("samarth/"): set(json.loads(r.plain_inputs["dataJson"]))
        for r in run.of_type("vault:kv/secretV2:SecretV2")
    }


def test_a_toy_service_gets_its_opening_its_vault_path_and_its_exports(with_toy: None, prod: ProgramRun) -> None:
    run = run_program("prod")
    assert run.error is None, run.error
    (row,) = [row for row in run.exports["firewall"] if row["service"] == "toy"]
    assert row["server"] == "application" and row["port"] == f"{toy_service.PORT}/tcp" and row["chain"] == "DOCKER-USER"
    assert set(row["from"]) == {"swarm members"}
    assert _secrets(run) == {**_secrets(prod), "toy": {"TOY_PASSWORD"}}
    assert run.exports["toyPort"] == toy_service.PORT
    (toy,) = run.of_type("samarth:toy:Toy")
    assert {r.type for r in run.under(toy)} == {"random:index/randomPassword:RandomPassword"}
    # Everything else is as it was.
    assert len(run.registrations) == len(prod.registrations) + 3
    assert [r for r in run.exports["firewall"] if r["service"] != "toy"] == prod.exports["firewall"]


def test_a_toy_service_on_a_taken_port_is_refused_before_anything_is_registered(
    with_toy: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(toy_service, "PORT", 9000)
    run = run_program("prod")
    assert isinstance(run.error, ConfigError) and run.registrations == []
    assert "the toy: port 9000/tcp on application is already used by MinIO's S3 API" in str(run.error)


def test_a_toy_service_publishing_another_services_key_is_refused(with_toy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def declare_registry_key(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
        return Declaration(credentials=(Credentials("registry", ("DOCKER_PASSWORD",)),))

    monkeypatch.setattr(toy_service, "SERVICE", Service("toy", declare_registry_key, "application"))
    run = run_program("prod")
    assert isinstance(run.error, ConfigError) and run.registrations == []
    assert "kv/samarth/registry already gets DOCKER_PASSWORD from registry" in str(run.error)
