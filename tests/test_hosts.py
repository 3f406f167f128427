"""The foundation: six Hosts per stack, each with its own SSH connection and Docker provider."""

from __future__ import annotations

import json

from components.config import SERVER_NAMES
from tools.offline import TEST_SECRETS, ProgramRun, plaintext_strings, reveal, run_program


def test_six_hosts_each_with_a_docker_provider_over_ssh_to_itself(stack_run: ProgramRun) -> None:
    hosts = {r.name: r for r in stack_run.of_type("samarth:host:Host")}
    assert sorted(hosts) == sorted(SERVER_NAMES)
    servers = json.loads(_stack_value(stack_run, "servers"))
    for name, host in hosts.items():
        (provider,) = [r for r in stack_run.of_type("pulumi:providers:docker") if r.parent == host.urn]
        server = servers[name]
        assert provider.inputs["host"] == f"ssh://{server['sshUser']}@{server['privateIp']}:{server['sshPort']}"
        (preflight,) = [r for r in stack_run.of_type("command:remote:Command") if r.parent == host.urn]
        assert preflight.urn in provider.dependencies
        connection = reveal(preflight.inputs["connection"])
        assert connection["host"] == server["privateIp"]
        assert connection["privateKey"] == TEST_SECRETS["sshPrivateKey"]
        assert TEST_SECRETS["sshPrivateKey"] not in plaintext_strings(preflight.inputs)


def _stack_value(run: ProgramRun, key: str) -> str:
    from tools.offline import read_stack_values, stack_file

    values, _ = read_stack_values(stack_file(run.stack))
    return values[f"samarth-infra:{key}"]


def test_staging_reaches_its_servers_through_the_jump_host(runs: dict[str, ProgramRun]) -> None:
    staging = runs["staging"]
    access = json.loads(_stack_value(staging, "access"))
    jump = access["jumpHost"]
    for provider in staging.of_type("pulumi:providers:docker"):
        ssh_opts = json.loads(provider.inputs["sshOpts"])
        assert ssh_opts[ssh_opts.index("-J") + 1] == f"{jump['user']}@{jump['host']}:{jump['port']}"
    for preflight in staging.of_type("command:remote:Command"):
        if preflight.name.endswith("-preflight"):
            proxy = reveal(preflight.inputs["connection"])["proxy"]
            assert (proxy["host"], proxy["user"], proxy["port"]) == (jump["host"], jump["user"], jump["port"])


def test_prod_has_no_jump_host(prod: ProgramRun) -> None:
    for provider in prod.of_type("pulumi:providers:docker"):
        assert "-J" not in json.loads(provider.inputs["sshOpts"])


def test_public_access_connects_to_public_addresses() -> None:
    servers = json.loads(_stack_value(run_program("prod"), "servers"))
    for number, server in enumerate(servers.values(), start=1):
        server["publicAddress"] = f"203.0.113.{100 + number}"
    run = run_program("prod", overrides={"servers": servers, "access": {"via": "public"}})
    assert run.error is None, run.error
    for host in run.of_type("samarth:host:Host"):
        (provider,) = [r for r in run.of_type("pulumi:providers:docker") if r.parent == host.urn]
        assert servers[host.name]["publicAddress"] in provider.inputs["host"]


def test_without_a_key_the_ssh_agent_is_used() -> None:
    run = run_program("prod", secrets={})
    assert run.error is None, run.error
    preflights = [r for r in run.of_type("command:remote:Command") if r.name.endswith("-preflight")]
    assert len(preflights) == 6
    for preflight in preflights:
        assert "privateKey" not in reveal(preflight.inputs["connection"])


def test_hosts_export_their_private_ips(prod: ProgramRun) -> None:
    servers = json.loads(_stack_value(prod, "servers"))
    assert prod.exports["privateIps"] == {name: s["privateIp"] for name, s in servers.items()}
