"""The foundation: six Hosts per stack, each with its own SSH connection and Docker provider."""

from __future__ import annotations

import json

from components.config import SERVER_NAMES
from tools.offline import TEST_SECRETS, ProgramRun, plaintext_strings, reveal


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
