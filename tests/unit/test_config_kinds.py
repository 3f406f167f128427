"""Kinds of config mistakes, each refused by one rule wherever it can be made: every network-valued key
by its type's rule, every address two servers would share, every name a backup target reaches the
servers by, every free-form map's keys against what they name, every URL against the shape its consumer
reads, every compose project's directory against the others'. Each kind is tried on several keys, and a
test walks the schema so that a key added later of the same type is tried too."""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from components.config import ConfigError, StackConfig, validate
from components.platform.firewall.settings import FirewallSettings
from components.shared.model import ANYWHERE, FIREWALL_SOURCE, NetworkRule, UrlRule, network_values, rule_keys
from tests.support.config_checks import refused
from tests.support.program_runs import program_run
from tools.offline import PROJECT, read_stack_values, stack_file


def _prod(key: str) -> Any:
    values, _ = read_stack_values(stack_file("prod"))
    return json.loads(values[f"{PROJECT}:{key}"])


def _prod_raw(stack: str = "prod") -> dict[str, Any]:
    """The stack's config as ``validate`` reads it (one document per top-level key)."""
    values, _ = read_stack_values(stack_file(stack))
    raw: dict[str, Any] = {}
    for key, text in values.items():
        name = key.split(":", 1)[1]
        try:
            raw[name] = json.loads(text)
        except json.JSONDecodeError:
            raw[name] = text
    return raw


_fails = refused


def _passes(**overrides: Any) -> None:
    run = program_run("prod", overrides=overrides)
    assert run.error is None, run.error


def _edited(key: str, change: Callable[[Any], object]) -> Any:
    value = copy.deepcopy(_prod(key))
    change(value)
    return value


def _refusal(raw: dict[str, Any]) -> str:
    """The message validating ``raw`` fails with, or "" when it is accepted."""
    try:
        validate(raw)
    except ConfigError as error:
        return str(error)
    return ""


# --- network-valued keys ----------------------------------------------------------------------------

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _set_path(raw: dict[str, Any], path: str, value: str) -> None:
    """Set ``path`` (``firewall.operators[0]``, ``edge.routes[0].allow[0]``) in ``raw``: an index inside the
    path picks that existing item; a final one makes the list ``[value]``."""
    tokens: list[Any] = [int(index) if index else name for name, index in _PATH_PART.findall(path)]
    node: Any = raw
    for position, token in enumerate(tokens[:-1]):
        if isinstance(token, int):
            node = node[token]
        elif position + 2 == len(tokens) and isinstance(tokens[-1], int):
            node[token] = [value]
            return
        else:
            node = node.setdefault(token, {})
    node[tokens[-1]] = value


def _names(message: str, key: str, fragment: str) -> bool:
    return any(key in line and fragment in line for line in message.splitlines())


NETWORK_KEYS = dict(rule_keys(StackConfig, NetworkRule))
URL_KEYS = dict(rule_keys(StackConfig, UrlRule))


def test_the_schema_walk_finds_every_network_key() -> None:
    expected = {
        "firewall.operators[0]",
        "firewall.pulumiFrom[0]",
        "firewall.jumpHostFrom[0]",
        "firewall.dockerBridge",
        "swarm.addressPool",
        "edge.routes[0].allow[0]",
        "vault.jenkins.tokenBoundCidrs[0]",
    }
    assert expected <= set(NETWORK_KEYS), sorted(NETWORK_KEYS)


def _networks_written(value: Any, path: str = "") -> Iterator[str]:
    """Key paths of every string in ``value`` that reads as a network in CIDR form."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _networks_written(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _networks_written(item, f"{path}[{index}]")
    elif isinstance(value, str) and "/" in value:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return
        yield path


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_every_network_a_stack_writes_is_at_a_key_with_a_rule(stack: str) -> None:
    """A network-valued key typed as plain text (as tokenBoundCidrs was) would escape the rules: every
    network the committed stacks write is at a key whose type carries one."""
    raw = _prod_raw(stack)
    ruled = {key for key, _, _ in network_values(validate(raw))}
    written = set(_networks_written(raw))
    assert written and written <= ruled, sorted(written - ruled)


def test_every_firewall_source_list_is_a_firewall_source() -> None:
    """By type: a source list added to the firewall section (Jenkins', say) is checked as the others."""
    lists = [
        f"firewall.{field.alias or name}[0]"
        for name, field in FirewallSettings.model_fields.items()
        if f"firewall.{field.alias or name}[0]" in NETWORK_KEYS
    ]
    assert len(lists) >= 3, lists
    for key in lists:
        assert NETWORK_KEYS[key] is FIREWALL_SOURCE, key


def _mistakes(rule: NetworkRule) -> list[tuple[str, str]]:
    """Values of each kind this rule refuses, with a fragment of the message."""
    mistakes = [
        ("0.0.0.0/0", "is the whole internet, which needs an explicit opt-in"),
        ("127.0.0.0/8", "loopback"),
        ("224.0.0.0/24", "multicast"),
        ("169.254.0.0/16", "link-local"),
        ("10.20.0.300/32", "is not a network in CIDR form"),
        ("10.20.9.1/24", "is not a network in CIDR form"),
    ]
    if 6 not in rule.families:
        mistakes += [("fd00:1::/64", "is an IPv6 network"), ("::/0", "is an IPv6 network"), ("2001:db8::1/128", "is an IPv6 network")]
    else:
        mistakes += [("::/0", "is the whole internet"), ("2001:db8::/32", "wider than /48"), ("::ffff:0:0/96", "IPv4-mapped")]
    if rule.role == "local":
        mistakes += [("198.51.100.0/24", "is not a private network"), ("8.0.0.0/8", "is not a private network")]
    else:
        mistakes += [("0.0.0.0/1", "wider than /24"), ("128.0.0.0/1", "wider than /24"), ("198.51.0.0/16", "wider than /24")]
    if not rule.anywhere:
        mistakes.append((ANYWHERE, "is not accepted"))
    if rule.role != "filter":
        # The prod servers are 10.20.0.10 to 10.20.0.33; application's public address is 203.0.113.10.
        mistakes += [("10.20.0.0/24", "holds servers.application.privateIp 10.20.0.10"), ("10.0.0.0/8", "holds servers.")]
        mistakes.append(("10.20.0.8/29", "holds servers.application.privateIp"))
    if rule.role == "local":
        mistakes.append(("10.20.0.21/32", "holds servers.db1.privateIp"))
    return mistakes


def _each_refused(key: str, mistakes: list[tuple[str, str]]) -> None:
    """Prod with ``key`` set to each value of ``mistakes`` is refused on a line naming the key and the fragment."""
    for value, fragment in mistakes:
        raw = _prod_raw()
        _set_path(raw, key, value)
        message = _refusal(raw)
        assert _names(message, key, fragment), (key, value, message)


@pytest.mark.parametrize("key", sorted(NETWORK_KEYS))
def test_every_network_key_refuses_each_kind_of_mistake(key: str) -> None:
    _each_refused(key, _mistakes(NETWORK_KEYS[key]))


@pytest.mark.parametrize("key", sorted(k for k, rule in NETWORK_KEYS.items() if rule.role == "source"))
def test_a_firewall_source_may_be_one_server_alone_or_anywhere(key: str) -> None:
    for value in ("10.20.0.10/32", ANYWHERE, "10.20.9.0/24", "203.0.113.64/26"):
        raw = _prod_raw()
        _set_path(raw, key, value)
        assert _refusal(raw) == "", (key, value)


@pytest.mark.parametrize(
    ("firewall", "fragment"),
    [
        ({"operators": ["fd00:20::/64"]}, "firewall.operators[0]: fd00:20::/64 is an IPv6 network; the host firewall writes IPv4 (iptables) rules only"),
        ({"operators": ["10.20.9.0/24", "0.0.0.0/0"]}, f"firewall.operators[1]: 0.0.0.0/0 is the whole internet, which needs an explicit opt-in; write {ANYWHERE!r}"),
        ({"operators": ["0.0.0.0/1", "128.0.0.0/1"]}, "firewall.operators[0]: 0.0.0.0/1 is a public network wider than /24"),
        ({"operators": ["10.20.0.0/16"]}, "firewall.operators[0]: 10.20.0.0/16 holds servers.application.privateIp 10.20.0.10"),
        ({"operators": ["10.20.9.0/24"], "pulumiFrom": ["10.20.0.0/27"]}, "firewall.pulumiFrom[0]: 10.20.0.0/27 holds servers."),
        ({"operators": ["172.17.4.0/24"]}, "firewall.operators[0]: 172.17.4.0/24 overlaps firewall.dockerBridge 172.17.0.0/16"),
        ({"operators": ["10.20.9.0/24"], "dockerBridge": "10.20.0.0/16"}, "firewall.dockerBridge: 10.20.0.0/16 holds servers."),
        ({"operators": ["10.20.9.0/24"], "dockerBridge": "10.20.9.128/25"}, "overlaps firewall.dockerBridge 10.20.9.128/25"),
        ({"operators": ["10.20.9.0/24"], "jumpHostFrom": ["10.200.7.0/24"]}, "firewall.jumpHostFrom[0]: 10.200.7.0/24 overlaps"),
    ],
)
def test_bad_firewall_networks_fail_before_any_resource(firewall: dict[str, Any], fragment: str) -> None:
    _fails([fragment], firewall={**_prod("firewall"), **firewall})


def test_the_swarm_pool_may_not_hold_a_firewall_source() -> None:
    _fails(
        ["firewall.operators[0]: 10.20.9.0/24 overlaps swarm.addressPool 10.20.8.0/22"],
        swarm={**_prod("swarm"), "addressPool": "10.20.8.0/22"},
    )


def test_anywhere_opens_ssh_to_the_internet_by_name() -> None:
    run = program_run("prod", overrides={"firewall": {**_prod("firewall"), "operators": [ANYWHERE]}})
    assert run.error is None, run.error
    ssh = [row for row in run.exports["firewall"] if row["server"] == "db1" and row["port"] == "22/tcp"]
    assert ssh and ssh[0]["from"]["operators"] == ["0.0.0.0/0"], ssh


@pytest.mark.parametrize("host", ["2001:db8::20", "::ffff:198.51.100.20"])
def test_an_ipv6_jump_host_needs_its_ipv4_source(host: str) -> None:
    values, _ = read_stack_values(stack_file("staging"))
    key = json.loads(values[f"{PROJECT}:access"])["jumpHost"]["hostKey"]
    access = {"via": "private", "jumpHost": {"host": host, "hostKey": key}}
    _fails([f"firewall.jumpHostFrom: required because access.jumpHost.host {host} is an IPv6 address"], access=access)
    _passes(access=access, firewall={**_prod("firewall"), "jumpHostFrom": ["198.51.100.20/32"]})


@pytest.mark.parametrize("cidrs", [["0.0.0.0/0"], ["::/0"], ["198.51.0.0/16"], ["10.0.0.1/8"], [ANYWHERE]])
def test_jenkins_token_bound_networks_are_networks_not_the_internet(cidrs: list[str]) -> None:
    vault = _edited("vault", lambda v: v["jenkins"].update(tokenBoundCidrs=cidrs))
    _fails(["vault.jenkins.tokenBoundCidrs[0]"], vault=vault)


# --- an address used by two servers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"db2": {"privateIp": "10.20.0.21"}}, "servers.db2.privateIp: 10.20.0.21 is already the private IP of db1"),
        ({"db1": {"publicAddress": "10.20.0.10"}}, "servers.db1.publicAddress: 10.20.0.10 is already the private IP of application"),
        ({"db1": {"publicAddress": "203.0.113.10"}}, "servers.db1.publicAddress: 203.0.113.10 is already the public address of application"),
        ({"db1": {"publicAddress": "::ffff:10.20.0.22"}}, "servers.db2.privateIp: 10.20.0.22 is already the public address of db1"),
        (
            {"application": {"publicAddress": "app.samarth.example.org"}, "swarm-node3": {"publicAddress": "APP.samarth.example.org"}},
            "servers.swarm-node3.publicAddress: APP.samarth.example.org is already the public address of application",
        ),
    ],
)
def test_an_address_used_by_two_servers_is_refused(changes: dict[str, dict[str, Any]], fragment: str) -> None:
    servers = _prod("servers")
    for name, change in changes.items():
        servers[name].update(change)
    _fails([fragment], servers=servers)


def test_servers_behind_one_nat_address_have_their_own_ssh_ports() -> None:
    servers = _prod("servers")
    servers["db1"].update(publicAddress="203.0.113.10", sshPort=2222)
    _passes(servers=servers)


@pytest.mark.parametrize("notation", ["0x0a.20.0.21", "10.20.0.0x15", "10.20.0.021"])
def test_an_address_in_another_notation_is_refused(notation: str) -> None:
    servers = _prod("servers")
    servers["db1"]["publicAddress"] = notation
    _fails(["servers.db1.publicAddress", "'" + notation + "'"], servers=servers)


# --- a backup target that is one of the servers ------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("10.20.0.21", "is servers.db1;"),
        ("203.0.113.10", "is servers.application;"),
        ("DB2", "is the name of servers.db2"),
        ("db1.samarth.example.org", "is the name of servers.db1"),
        ("swarm-master", "is the name of servers.swarm-master"),
        ("localhost", "loopback"),
        ("127.0.0.1", "loopback"),
        ("0.0.0.0", "loopback"),
        ("files.samarth.example.org", "a name this stack's Nginx or Vault serves on the application server (edge.routes[1])"),
        ("Registry.samarth.example.org", "(edge.routes[0])"),
        ("sentry.samarth.example.org", "(observability.sentry.hostName)"),
    ],
)
def test_an_offsite_repository_on_one_of_the_servers_is_refused(host: str, fragment: str) -> None:
    offsite = {"repository": f"s3:https://{host}/samarth-offsite", "accessKeyId": "AKIAEXAMPLEKEY"}
    _fails([f"backups.offsite.repository: {host} is ", fragment], backups={**_prod("backups"), "offsite": offsite})


def test_an_sftp_offsite_repository_on_a_server_by_name_is_refused() -> None:
    key = _prod("servers")["db2"]["hostKey"]
    offsite = {"repository": "sftp:restic@db2:/srv/restic", "hostKey": key}
    _fails(["backups.offsite.repository: db2 is the name of servers.db2"], backups={**_prod("backups"), "offsite": offsite})


def test_an_offsite_repository_elsewhere_is_accepted() -> None:
    raw = _prod_raw()
    raw["backups"]["offsite"] = {"repository": "s3:https://s3.other-site.example.net/samarth", "accessKeyId": "AKIAEXAMPLEKEY"}
    assert _refusal(raw) == ""


# --- keys of free-form maps against the names they refer to --------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "key"),
    [({"postgress": 5}, "postgress"), ({"minio": 20}, "minio"), ({"sentry": 1}, "sentry"), ({"postgres-esamwad": 3}, "postgres-esamwad")],
)
def test_a_backup_size_for_no_target_is_refused(sizes: dict[str, float], key: str) -> None:
    _fails([f"backups.dataGib.{key}: {key!r} is neither a backup method in use"], backups={**_prod("backups"), "dataGib": sizes})


def test_backup_sizes_by_target_and_by_method_are_accepted() -> None:
    _passes(backups={**_prod("backups"), "dataGib": {"registry": 60, "postgres-yaus": 2, "vault-raft": 1, "minio-doc-generator": 5}})


def test_a_schedule_for_a_method_no_target_uses_is_refused() -> None:
    from components.services.backups.settings import Backups, key_problems
    from components.shared.service import BackupSource

    settings = Backups.model_validate({"schedules": {"postgres": "hourly", "rabbitmq": "daily"}})
    sources = [BackupSource("db1", "postgres-esamwad-backend", "postgres"), BackupSource("swarm-master", "swarm", "swarm")]
    assert key_problems(settings, sources) == [
        "backups.schedules.rabbitmq: no backup target of this stack is taken by rabbitmq (methods in use: postgres, swarm)"
    ]


def test_a_database_size_for_an_engine_no_service_uses_is_refused() -> None:
    databases = _edited("databases", lambda d: d["memoryMib"].update(elasticsearch=2048))
    _fails(["databases.memoryMib.elasticsearch: no database service of this stack uses elasticsearch"], databases=databases)


@pytest.mark.parametrize(
    ("service", "key"), [("templater", "DATABASE_ULR"), ("esamwad-backend", "REDIS_URI"), ("odk-adapter", "database_url")]
)
def test_removing_a_variable_the_catalogue_does_not_have_is_refused(service: str, key: str) -> None:
    databases = _edited("databases", lambda d: d["services"].update({service: {"env": {key: None}}}))
    _fails([f"databases.services.{service}.env.{key}: null removes a catalogue variable, and {service} has no {key}"], databases=databases)


def test_removing_a_catalogue_variable_is_accepted() -> None:
    _passes(databases=_edited("databases", lambda d: d["services"].update({"templater": {"env": {"DATABASE_URL": None}}})))


@pytest.mark.parametrize("key", ["com.docker.network", "io.docker.zone", "org.dockerproject.tier"])
def test_a_node_label_in_dockers_namespace_is_refused(key: str) -> None:
    swarm = _edited("swarm", lambda s: s["labels"]["swarm-node2"].update({key: "a"}))
    _fails([f"swarm.labels.swarm-node2.{key}: ", "reserved for Docker's own use"], swarm=swarm)


# --- URLs in the shape their consumer reads ------------------------------------------------------------


def test_the_schema_walk_finds_every_url_key() -> None:
    assert {"vault.apiAddr", "vault.clusterAddr", "edge.tls.acme.directoryUrl"} <= set(URL_KEYS), sorted(URL_KEYS)


def _url_mistakes(rule: UrlRule) -> list[tuple[str, str]]:
    scheme = rule.schemes[-1]
    mistakes = [
        (f"{scheme}://jenkins:secret@vault.example.org:8200", "holds credentials"),
        (f"{scheme}://vault.example.org:99999", "port out of range"),
        (f"{scheme}://vault.example.org:0", "port out of range"),
        (f"{scheme}://:8200", "has no host"),
        (f"{scheme}://vault.example.org:8200?x=1", "query or a fragment"),
        (f"{scheme}://vault.example.org:8200#top", "query or a fragment"),
        ("ftp://vault.example.org:8200", f"is not an {' or '.join(rule.schemes)} URL"),
        (f"{scheme}:/vault.example.org:8200", "URL"),
        (f"{scheme}://0x0a.0.0.1:8200", "another notation"),
        (f"{scheme}://vault_example.org:8200", "neither an IP address nor a host name"),
    ]
    if "http" not in rule.schemes:
        mistakes.append(("http://vault.example.org:8200", "is not an https URL"))
    if not rule.path:
        mistakes += [(f"{scheme}://vault.example.org:8200/v1", "has a path"), (f"{scheme}://vault.example.org:8200/", "has a path")]
    else:
        mistakes.append((f"{scheme}://acme.example.org/../directory", "not a plain path"))
    if rule.port:
        mistakes.append((f"{scheme}://vault.example.org", "has no port"))
    for host in ("127.0.0.1", "0.0.0.0", "localhost", "[::1]"):
        mistakes.append((f"{scheme}://{host}:8200", "names the machine itself"))
    return mistakes


@pytest.mark.parametrize("key", sorted(URL_KEYS))
def test_every_url_key_refuses_each_kind_of_mistake(key: str) -> None:
    rule = URL_KEYS[key]
    _each_refused(key, _url_mistakes(rule))
    raw = _prod_raw()
    _set_path(raw, key, f"{rule.schemes[-1]}://vault.example.org:8200" + ("/directory" if rule.path else ""))
    assert _refusal(raw) == "", key


def test_an_offsite_s3_port_out_of_range_is_refused() -> None:
    offsite = {"repository": "s3:https://s3.example.net:70000/samarth", "accessKeyId": "AKIAEXAMPLEKEY"}
    _fails(["backups.offsite.repository", "port 70000 is out of range"], backups={**_prod("backups"), "offsite": offsite})


# --- compose projects' directories ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentry", "posthog", "fragment"),
    [
        ("/opt/samarth", "/opt/samarth/posthog", "posthog.directory: posthog.directory /opt/samarth/posthog is inside sentry.directory /opt/samarth"),
        ("/srv/posthog/sentry", "/srv/posthog", "sentry.directory /srv/posthog/sentry is inside posthog.directory /srv/posthog"),
        ("/opt/samarth/sentry", "/opt/samarth/sentry", "posthog.directory: /opt/samarth/sentry is already sentry.directory"),
        ("/opt/samarth/sentry", "/opt/samarth//posthog", "is not in normal form"),
        ("/opt/./samarth/sentry", "/opt/samarth/posthog", "is not in normal form"),
    ],
)
def test_nested_compose_directories_are_refused(sentry: str, posthog: str, fragment: str) -> None:
    observability = _edited("observability", lambda o: (o["sentry"].update(directory=sentry), o["posthog"].update(directory=posthog)))
    _fails([fragment], observability=observability)


def test_compose_directories_sharing_a_prefix_are_apart() -> None:
    observability = _edited(
        "observability", lambda o: (o["sentry"].update(directory="/opt/samarth/sentry"), o["posthog"].update(directory="/opt/samarth/sentry-posthog"))
    )
    _passes(observability=observability)
