"""The host firewall's model: the matrix follows the program's wiring and the stack config."""

from __future__ import annotations

import json
from typing import Any

from components.platform.firewall import component as firewall
from components.shared.model import PRIVATE_NETWORKS
from tests.support.program_runs import program_run
from tests.support.rendered import script_values
from tools.offline import PROJECT, ROOT, ProgramRun, read_stack_values, stack_file

DOC = ROOT / "docs" / "firewall.md"
COMMAND = "command:remote:Command"


def _prod(key: str) -> Any:
    values, _ = read_stack_values(stack_file("prod"))
    return json.loads(values[f"{PROJECT}:{key}"])


def _rows(run: ProgramRun, server: str | None = None) -> list[dict[str, Any]]:
    return [r for r in run.exports["firewall"] if server is None or r["server"] == server]


def _members(run: ProgramRun, stack_key: str = "swarm") -> set[str]:
    servers = _prod("servers")
    return {f"{servers[m]['privateIp']}/32" for m in ("swarm-master", *_prod(stack_key)["workers"])}


def _sources(row: dict[str, Any]) -> set[str]:
    return {n for networks in row["from"].values() for n in networks}


def test_database_ports_only_from_the_swarm_members(prod: ProgramRun) -> None:
    databases = prod.exports["databases"]
    expected = {(db["host"], db["port"]) for ends in databases.values() for db in ends.values()}
    servers = {s["privateIp"]: name for name, s in _prod("servers").items()}
    published = {(r["server"], r["port"]) for r in prod.exports["firewall"] if r["server"] in ("db1", "db2") and r["service"] != "SSH"}
    assert published == {(servers[host], f"{port}/tcp") for host, port in expected}
    for row in _rows(prod):
        if row["server"] in ("db1", "db2") and row["service"] != "SSH":
            assert row["chain"] == "DOCKER-USER"
            assert _sources(row) == _members(prod), row


def test_vault_only_from_nginx_swarm_master_jenkins_and_pulumi(prod: ProgramRun) -> None:
    servers = _prod("servers")
    (api,) = [r for r in _rows(prod, "application") if r["service"] == "Vault API"]
    assert api["chain"] == "INPUT" and api["port"] == f"{_prod('vault').get('port', 8200)}/tcp"
    assert _sources(api) == {
        "172.17.0.0/16", f"{servers['swarm-master']['privateIp']}/32", f"{servers['application']['privateIp']}/32",
        *_prod("firewall")["jenkins"],
    }
    assert api["from"]["Jenkins"] == _prod("firewall")["jenkins"]
    (cluster,) = [r for r in _rows(prod, "application") if r["service"] == "Vault cluster"]
    assert cluster["from"] == {}


def test_registry_from_the_swarm_members_and_nginx(prod: ProgramRun) -> None:
    (row,) = [r for r in _rows(prod, "application") if r["service"] == "registry"]
    assert _sources(row) == _members(prod) | {"172.17.0.0/16"}


def test_swarm_ports_only_between_members_with_esp_when_encrypted(prod: ProgramRun) -> None:
    for member in ("swarm-master", *_prod("swarm")["workers"]):
        swarm = {r["port"]: r for r in _rows(prod, member) if r["service"].startswith("swarm") and "route" not in r["service"]}
        assert set(swarm) == {"2377/tcp", "7946/tcp", "7946/udp", "4789/udp", "esp"}
        assert all(_sources(r) == _members(prod) and r["chain"] == "INPUT" for r in swarm.values())
    unencrypted: dict[str, Any] = {**_prod("swarm"), "encryptOverlay": False}
    run = program_run("prod", overrides={"swarm": unencrypted})
    assert run.error is None, run.error
    assert not [r for r in _rows(run) if r["port"] == "esp"]


def test_swarm_members_follow_config(prod: ProgramRun) -> None:
    swarm = dict(_prod("swarm"), workers=["swarm-node2"], labels={})
    run = program_run("prod", overrides={"swarm": swarm})
    assert run.error is None, run.error
    servers = _prod("servers")
    members = {f"{servers[m]['privateIp']}/32" for m in ("swarm-master", "swarm-node2")}
    (row,) = [r for r in _rows(run, "db2") if r["port"] == "5432/tcp"]
    assert _sources(row) == members
    assert not [r for r in _rows(run, "swarm-node3") if r["service"] != "SSH"]


def test_ssh_first_from_operators_pulumi_and_the_jump_host(runs: dict[str, ProgramRun]) -> None:
    for stack, run in runs.items():
        values, _ = read_stack_values(stack_file(stack))
        config: dict[str, Any] = {k.split(":", 1)[1]: json.loads(v) if v[:1] in "[{" else v for k, v in values.items()}
        application_ip = config["servers"]["application"]["privateIp"]
        for server in config["servers"]:
            rows = _rows(run, server)
            assert rows[0]["service"] == "SSH" and rows[0]["chain"] == "INPUT"
            assert _sources(rows[0]) == {*config["firewall"]["operators"], f"{application_ip}/32"}
        # Staging's jump host is the application server's public address: it connects from its private IP.
        if stack == "staging":
            assert rows[0]["from"]["jump host"] == [f"{application_ip}/32"]


def test_rules_keep_established_connections_and_ssh_before_any_drop(prod: ProgramRun) -> None:
    for registration in prod.of_type(COMMAND):
        if not registration.name.startswith("firewall-"):
            continue
        create = registration.plain_inputs["create"]
        rules = script_values(create)["RULES"].splitlines()
        assert rules[0] == "-A SAMARTH-INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN"
        first_drop = next(i for i, line in enumerate(rules) if line.endswith("-j DROP"))
        assert "--dport 22 -j DROP" in rules[first_drop]
        assert all("--dport 22" in line for line in rules[2:first_drop])
        assert "-A SAMARTH-DOCKER-USER -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN" in rules
        for line in rules:
            if line.startswith("-A SAMARTH-DOCKER-USER") and "--ctorigdstport" in line:
                assert "--ctstate DNAT" in line and "--ctdir ORIGINAL" in line


def test_every_private_listener_a_service_declares_is_in_the_matrix(prod: ProgramRun) -> None:
    from components.assembly import declarations
    from components.config import load_stack_config

    config = load_stack_config(PROJECT, read_stack_values(stack_file("prod"))[0])
    matrix = {(r["server"], r["port"]) for r in _rows(prod)}
    listeners = [listener for declaration in declarations(config).values() for listener in declaration.listeners]
    assert {(listener.server, listener.port) for listener in listeners if listener.clients is None} == {("application", 80), ("application", 443)}
    for listener in listeners:
        if listener.clients is not None:
            assert (listener.server, f"{listener.port}/{listener.protocol}") in matrix, listener


def test_no_source_is_the_whole_internet(prod: ProgramRun) -> None:
    import ipaddress

    for row in _rows(prod):
        for network in _sources(row):
            net = ipaddress.IPv4Network(network)
            assert any(net.subnet_of(p) for p in PRIVATE_NETWORKS), (row, network)


def test_disabled_firewall_installs_nothing() -> None:
    run = program_run("prod", overrides={"firewall": dict(_prod("firewall"), enabled=False)})
    assert run.error is None, run.error
    assert not [r for r in run.of_type(COMMAND) if r.name.startswith("firewall-")]


def test_a_jump_host_by_name_needs_its_address() -> None:
    from components.config import ConfigError

    staging, _ = read_stack_values(stack_file("staging"))
    key = json.loads(staging[f"{PROJECT}:access"])["jumpHost"]["hostKey"]
    access = {"via": "private", "jumpHost": {"host": "bastion.example.org", "hostKey": key}}
    run = program_run("prod", overrides={"access": access})
    assert isinstance(run.error, ConfigError) and run.registrations == []
    assert "firewall.jumpHostFrom: required because access.jumpHost.host 'bastion.example.org' is a name" in str(run.error)
    firewall_settings = dict(_prod("firewall"), jumpHostFrom=["10.20.5.7/32"])
    run = program_run("prod", overrides={"access": access, "firewall": firewall_settings})
    assert run.error is None, run.error
    assert _rows(run, "db2")[0]["from"]["jump host"] == ["10.20.5.7/32"]


def test_the_docs_show_prods_matrix(prod: ProgramRun) -> None:
    text = DOC.read_text()
    assert firewall.matrix_table(prod.exports["firewall"]) in text, (
        "docs/firewall.md is out of date: paste the table `python -m tools.plan --stack prod` prints"
    )


def test_every_published_container_port_is_in_the_matrix(stack_run: ProgramRun) -> None:
    """A component that publishes a port without declaring who may use it would leave the port open:
    every port any container publishes (bar Nginx's public 80/443) has its row on that server."""
    matrix = {(r["server"], r["port"]) for r in _rows(stack_run)}
    published = 0
    for container in stack_run.of_type("docker:index/container:Container"):
        provider = stack_run.provider_of(container)
        assert provider is not None and provider.name.endswith("-docker"), container.name
        server = provider.name.removesuffix("-docker")
        for port in container.plain_inputs.get("ports") or []:
            external = int(port["external"])  # numbers arrive as floats from the wire
            if port.get("ip") == "0.0.0.0" and external in (80, 443):
                continue
            published += 1
            assert (server, f"{external}/{port.get('protocol') or 'tcp'}") in matrix, (container.name, port)
    assert published >= 10


def test_jenkins_reaches_swarm_masters_ssh_for_its_deploy_key_and_no_other_server(prod: ProgramRun) -> None:
    jenkins = set(_prod("firewall")["jenkins"])
    rows = {r["server"]: r for r in _rows(prod) if r["port"] == "22/tcp" and "Jenkins" in r["from"]}
    assert set(rows) == {"swarm-master"}
    assert _sources(rows["swarm-master"]) == jenkins and rows["swarm-master"]["chain"] == "INPUT"
    rules = script_values(prod.named(COMMAND, "firewall-swarm-master").inputs["create"])["RULES"].splitlines()
    ssh = [line for line in rules if "--dport 22 " in line]
    assert ssh[-1].endswith("-j DROP") and all(f"-s {n} " in "\n".join(ssh) for n in jenkins)
    # Without a deploy key, no SSH for Jenkins; without firewall.jenkins, Jenkins reaches nothing.
    run = program_run("prod", overrides={"swarm": {k: v for k, v in _prod("swarm").items() if k != "deployKey"}})
    assert run.error is None, run.error
    assert not [r for r in run.exports["firewall"] if "Jenkins" in r["from"] and r["port"] == "22/tcp"]
    swarm = {k: v for k, v in _prod("swarm").items() if k != "deployKey"}
    run = program_run("prod", overrides={"swarm": swarm, "firewall": {k: v for k, v in _prod("firewall").items() if k != "jenkins"}})
    assert run.error is None, run.error
    assert not [r for r in run.exports["firewall"] if "Jenkins" in r["from"]]
    assert not jenkins & {n for r in run.exports["firewall"] for nets in r["from"].values() for n in nets}
