"""The foundation: six Hosts per stack, each with its own SSH connection and Docker provider."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from components.platform.host.component import render_known_hosts
from components.platform.host.settings import Access, Server
from components.shared.model import SERVER_NAMES
from tests.support.program_runs import program_rerun, program_run
from tools.offline import TEST_SECRETS, ProgramRun, plaintext_strings, reveal

EXAMPLE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBletDEp7zgwBparP3LXuBVpK2APcX4NQRNsVwgaeq5W"


def test_six_hosts_each_with_a_docker_provider_over_ssh_to_itself(stack_run: ProgramRun) -> None:
    hosts = {r.name: r for r in stack_run.of_type("samarth:host:Host")}
    assert sorted(hosts) == sorted(SERVER_NAMES)
    servers = json.loads(_stack_value(stack_run, "servers"))
    for name, host in hosts.items():
        (provider,) = [r for r in stack_run.of_type("pulumi:providers:docker") if r.parent == host.urn]
        server = servers[name]
        assert provider.inputs["host"] == f"ssh://{server['sshUser']}@{server['privateIp']}:{server['sshPort']}"
        (preflight,) = [r for r in stack_run.of_type("command:remote:Command") if r.parent == host.urn and r.name.endswith("-preflight")]
        assert preflight.urn in provider.dependencies
        connection = reveal(preflight.inputs["connection"])
        assert connection["host"] == server["privateIp"]
        assert connection["privateKey"] == TEST_SECRETS["sshPrivateKey"]
        assert TEST_SECRETS["sshPrivateKey"] not in plaintext_strings(preflight.inputs)


def _stack_value(run: ProgramRun, key: str) -> str:
    from tools.offline import read_stack_values, stack_file

    values, _ = read_stack_values(stack_file(run.stack))
    return values[f"samarth-infra:{key}"]


def _option(ssh_opts: list[str], name: str) -> str:
    (value,) = [o.split("=", 1)[1] for o in ssh_opts if o.startswith(f"{name}=")]
    return value


def test_staging_reaches_its_servers_through_the_jump_host(runs: dict[str, ProgramRun]) -> None:
    staging = runs["staging"]
    access = json.loads(_stack_value(staging, "access"))
    jump = access["jumpHost"]
    for provider in staging.of_type("pulumi:providers:docker"):
        ssh_opts = json.loads(provider.inputs["sshOpts"])
        # Not `-J`: ssh would not pass the trust options on to the jump's own ssh.
        assert "-J" not in ssh_opts
        proxy = shlex.split(_option(ssh_opts, "ProxyCommand"))
        assert proxy[0] == "ssh" and proxy[-1] == jump["host"]
        assert proxy[proxy.index("-l") + 1] == jump["user"] and proxy[proxy.index("-p") + 1] == str(jump["port"])
        assert "StrictHostKeyChecking=yes" in proxy
        assert f"UserKnownHostsFile={_option(ssh_opts, 'UserKnownHostsFile')}" in proxy
    for preflight in staging.of_type("command:remote:Command"):
        if preflight.name.endswith("-preflight"):
            proxy = reveal(preflight.inputs["connection"])["proxy"]
            assert (proxy["host"], proxy["user"], proxy["port"]) == (jump["host"], jump["user"], jump["port"])
            assert proxy["hostKey"] == " ".join(jump["hostKey"].split()[:2])


def test_prod_has_no_jump_host(prod: ProgramRun) -> None:
    for provider in prod.of_type("pulumi:providers:docker"):
        ssh_opts = json.loads(provider.inputs["sshOpts"])
        assert "-J" not in ssh_opts and not any(o.startswith("ProxyCommand=") for o in ssh_opts)


def test_every_connection_pins_its_servers_host_key(stack_run: ProgramRun) -> None:
    servers = json.loads(_stack_value(stack_run, "servers"))
    by_address = {s["privateIp"]: " ".join(s["hostKey"].split()[:2]) for s in servers.values()}
    commands = stack_run.of_type("command:remote:Command")
    assert commands
    for registration in commands:
        connection = reveal(registration.inputs["connection"])
        assert connection["hostKey"] == by_address[connection["host"]], registration.name


def test_the_docker_provider_trusts_only_the_rendered_known_hosts(stack_run: ProgramRun) -> None:
    # The files are written when the program runs; other tests' runs of this stack (with a jump host,
    # say) rewrite them, so read them right after a run of the stack as committed.
    stack_run = program_rerun(stack_run.stack)
    servers = json.loads(_stack_value(stack_run, "servers"))
    access = json.loads(_stack_value(stack_run, "access"))
    jump = access.get("jumpHost")
    providers = {p.name: p for p in stack_run.of_type("pulumi:providers:docker")}
    for name, server in servers.items():
        # Exactly this server's key (and the jump host's): no other server's key passes for it.
        expected = {f"{server['privateIp']} {' '.join(server['hostKey'].split()[:2])}"}
        if jump:
            expected.add(f"{jump['host']} {' '.join(jump['hostKey'].split()[:2])}")
        ssh_opts = json.loads(providers[f"{name}-docker"].inputs["sshOpts"])
        for option in ("StrictHostKeyChecking=yes", "GlobalKnownHostsFile=/dev/null", "UpdateHostKeys=no", "BatchMode=yes"):
            assert option in ssh_opts
        known_hosts = Path(_option(ssh_opts, "UserKnownHostsFile"))
        assert known_hosts.is_absolute() and known_hosts.parent.name == stack_run.stack
        assert set(known_hosts.read_text().splitlines()) == expected


def test_known_hosts_names_a_non_default_port_in_brackets() -> None:
    server = Server.model_validate(
        {"privateIp": "10.0.0.5", "sshPort": 2222, "memoryMib": 1024, "cpus": 1, "hostKey": EXAMPLE_KEY}
    )
    jump = {"host": "bastion.example.org", "port": 2200, "hostKey": EXAMPLE_KEY + " a comment"}
    text = render_known_hosts({"db1": server}, Access.model_validate({"jumpHost": jump}))
    assert text.splitlines() == [f"[bastion.example.org]:2200 {EXAMPLE_KEY}", f"[10.0.0.5]:2222 {EXAMPLE_KEY}"]


def test_public_access_connects_to_public_addresses(prod: ProgramRun) -> None:
    servers = json.loads(_stack_value(prod, "servers"))
    for number, server in enumerate(servers.values(), start=1):
        server["publicAddress"] = f"203.0.113.{100 + number}"
    run = program_run("prod", overrides={"servers": servers, "access": {"via": "public"}})
    assert run.error is None, run.error
    for host in run.of_type("samarth:host:Host"):
        (provider,) = [r for r in run.of_type("pulumi:providers:docker") if r.parent == host.urn]
        assert servers[host.name]["publicAddress"] in provider.inputs["host"]


def test_without_a_key_the_ssh_agent_is_used() -> None:
    run = program_run("prod", secrets={})
    assert run.error is None, run.error
    preflights = [r for r in run.of_type("command:remote:Command") if r.name.endswith("-preflight")]
    assert len(preflights) == 6
    for preflight in preflights:
        assert "privateKey" not in reveal(preflight.inputs["connection"])


def test_hosts_export_their_private_ips(prod: ProgramRun) -> None:
    servers = json.loads(_stack_value(prod, "servers"))
    assert prod.exports["privateIps"] == {name: s["privateIp"] for name, s in servers.items()}
