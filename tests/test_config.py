"""Bad stack config stops the program before any resource is registered, naming the key path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from components.config import ConfigError
from tools.offline import PROJECT, read_stack_values, run_program, stack_file


def _prod(key: str) -> Any:
    values, _ = read_stack_values(stack_file("prod"))
    return json.loads(values[f"{PROJECT}:{key}"])


def _servers_with(**changes: Any) -> dict[str, Any]:
    servers = copy.deepcopy(_prod("servers"))
    for path, value in changes.items():
        server, key = path.split("__")
        server = server.replace("_", "-")
        if value is None:
            servers[server].pop(key)
        else:
            servers[server][key] = value
    return servers


def _fails(expected: list[str], **overrides: Any) -> None:
    run = run_program("prod", overrides=overrides)
    assert isinstance(run.error, ConfigError), run.error
    message = str(run.error)
    for fragment in expected:
        assert fragment in message, message
    assert run.registrations == [], "nothing may be registered when config is bad"


def test_missing_server() -> None:
    servers = _prod("servers")
    del servers["db2"]
    _fails(["servers: missing db2"], servers=servers)


def test_unknown_server() -> None:
    servers = _prod("servers")
    servers["db3"] = dict(servers["db2"], privateIp="10.20.0.99")
    _fails(["servers.db3", "unknown server 'db3'"], servers=servers)


def test_malformed_ip() -> None:
    _fails(["servers.db1.privateIp", "'10.20.0.300' is not an IPv4 address"], servers=_servers_with(db1__privateIp="10.20.0.300"))


def test_private_ip_outside_private_ranges() -> None:
    _fails(["servers.db1.privateIp", "198.51.100.7 is not a private address"], servers=_servers_with(db1__privateIp="198.51.100.7"))


def test_duplicate_private_ip() -> None:
    _fails(
        ["servers.db2.privateIp: 10.20.0.21 is already the private IP of db1"],
        servers=_servers_with(db2__privateIp="10.20.0.21"),
    )


@pytest.mark.parametrize("port", [0, 65536, -22])
def test_ssh_port_out_of_range(port: int) -> None:
    _fails(["servers.swarm-node2.sshPort"], servers=_servers_with(swarm_node2__sshPort=port))


def test_unknown_key_inside_a_server() -> None:
    servers = _servers_with()
    servers["db1"]["memoryMb"] = 8192
    _fails(["servers.db1.memoryMb: unknown key"], servers=servers)


def test_unknown_top_level_key() -> None:
    _fails(["sever: unknown key"], sever={"db1": {}})


def test_missing_required_key() -> None:
    _fails(["servers.db1.memoryMib: required key is missing"], servers=_servers_with(db1__memoryMib=None))


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("redis:latest", "moving tag 'latest'"),
        ("redis", "has no tag"),
        ("registry.example.org:5000/redis", "has no tag"),
        ("redis@sha256:1234", "malformed digest"),
    ],
)
def test_unpinned_version(image: str, problem: str) -> None:
    versions = dict(_prod("versions"), redis=image)
    _fails(["versions.redis", problem], versions=versions)


def test_unknown_version_key() -> None:
    versions = dict(_prod("versions"), postgress="postgres:16.10")
    _fails(["versions.postgress: unknown key"], versions=versions)


def test_pinned_by_registry_port_and_digest_is_accepted() -> None:
    versions = dict(
        _prod("versions"),
        redis="registry.example.org:5000/redis:7.4.11",
        rabbitmq="rabbitmq@sha256:" + "b" * 64,
        postgres="postgres:16.15@sha256:" + "a" * 64,
    )
    run = run_program("prod", overrides={"versions": versions})
    assert run.error is None, run.error


def test_a_digest_does_not_excuse_a_moving_tag_and_postgres_needs_its_major_version() -> None:
    _fails(
        [
            "versions.postgres: 'postgres@sha256:" + "a" * 64 + "' has no version tag; write postgres:<version> "
            "or postgres:<version>@sha256:<digest> (the data path and the upgrade check follow the major version)",
            "versions.redis: 'redis:latest@sha256:" + "c" * 64 + "' uses the moving tag 'latest'; pin a version",
        ],
        versions=dict(_prod("versions"), postgres="postgres@sha256:" + "a" * 64, redis="redis:latest@sha256:" + "c" * 64),
    )


def test_an_engine_a_service_uses_must_be_pinned() -> None:
    versions = {k: v for k, v in _prod("versions").items() if k != "opensearch"}
    _fails(["versions.opensearch: required, opensearch is used by fusionauth; pin an image"], versions=versions)


def test_public_access_needs_every_public_address() -> None:
    _fails(["servers.db1.publicAddress: required because access.via is 'public'"], access={"via": "public"})


def test_ssh_key_in_plaintext_is_refused() -> None:
    values, _ = read_stack_values(stack_file("prod"))
    values = dict(values, **{f"{PROJECT}:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----"})
    run = run_program("prod", values=values, secrets={})
    assert isinstance(run.error, ConfigError)
    assert "sshPrivateKey: stored in plaintext" in str(run.error)
    assert run.registrations == []


def test_every_error_is_reported_at_once() -> None:
    servers = _servers_with(db1__privateIp="8.8.8.8", db2__sshPort=70000)
    _fails(["servers.db1.privateIp", "servers.db2.sshPort"], servers=servers)


def test_both_stacks_share_one_schema() -> None:
    prod_keys = set(read_stack_values(stack_file("prod"))[0])
    staging_keys = set(read_stack_values(stack_file("staging"))[0])
    assert prod_keys == staging_keys


def test_pulumi_yaml_declares_exactly_the_keys_the_program_reads() -> None:
    import yaml

    from components.config import SECRET_KEYS, TOP_LEVEL_KEYS
    from tools.offline import ROOT, project_declarations

    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    declarations = project_declarations()
    assert set(declarations) == set(TOP_LEVEL_KEYS) | set(SECRET_KEYS)
    for key, spec in declarations.items():
        assert spec["type"] in {"string", "integer", "boolean", "array", "object"}, key
        assert spec.get("description"), f"{key} has no description"


def test_project_defaults_alone_are_valid_config() -> None:
    """A stack that sets only what has no default runs on Pulumi.yaml's defaults, as under the CLI."""
    from tools.offline import project_declarations

    values, _ = read_stack_values(stack_file("prod"))
    required = {k for k, spec in project_declarations().items() if "default" not in spec}
    minimal = {k: v for k, v in values.items() if k.split(":", 1)[1] in required}
    run = run_program("prod", values=minimal, secrets={})
    assert run.error is None, run.error
