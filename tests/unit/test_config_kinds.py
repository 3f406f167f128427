"""Kinds of config mistakes, each refused by one rule wherever it can be made: every network-valued key
by its type's rule, every address two servers would share, every name a backup target reaches the
servers by, every free-form map's keys against what they name, every URL against the shape its consumer
reads, every compose project's directory against the others'. Each kind is tried on several keys, and a
test walks the schema so that a key added later of the same type is tried too."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from components.config import ConfigError, StackConfig, validate
from components.platform.firewall.settings import FirewallSettings
from components.shared.model import ANYWHERE, FIREWALL_SOURCE, NetworkRule, network_keys
from tools.offline import PROJECT, read_stack_values, run_program, stack_file


def _prod(key: str) -> Any:
    values, _ = read_stack_values(stack_file("prod"))
    return json.loads(values[f"{PROJECT}:{key}"])


def _prod_raw() -> dict[str, Any]:
    values, _ = read_stack_values(stack_file("prod"))
    raw: dict[str, Any] = {}
    for key, text in values.items():
        name = key.split(":", 1)[1]
        try:
            raw[name] = json.loads(text)
        except json.JSONDecodeError:
            raw[name] = text
    return raw


def _fails(expected: list[str], **overrides: Any) -> None:
    """The prod stack with ``overrides`` is refused naming every fragment, and nothing is registered."""
    run = run_program("prod", overrides=overrides)
    assert isinstance(run.error, ConfigError), run.error
    message = str(run.error)
    for fragment in expected:
        assert fragment in message, message
    assert run.registrations == [], "nothing may be registered when config is bad"


def _passes(**overrides: Any) -> None:
    run = run_program("prod", overrides=overrides)
    assert run.error is None, run.error


def _edited(key: str, change: Callable[[Any], None]) -> Any:
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


NETWORK_KEYS = dict(network_keys(StackConfig))


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
        mistakes += [("::/0", "is the whole internet"), ("2001:db8::/32", "wider than /48")]
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


@pytest.mark.parametrize("key", sorted(NETWORK_KEYS))
def test_every_network_key_refuses_each_kind_of_mistake(key: str) -> None:
    rule = NETWORK_KEYS[key]
    for value, fragment in _mistakes(rule):
        raw = _prod_raw()
        _set_path(raw, key, value)
        message = _refusal(raw)
        assert _names(message, key, fragment), (key, value, message)


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
    run = run_program("prod", overrides={"firewall": {**_prod("firewall"), "operators": [ANYWHERE]}})
    assert run.error is None, run.error
    ssh = [row for row in run.exports["firewall"] if row["server"] == "db1" and row["port"] == "22/tcp"]
    assert ssh and ssh[0]["from"]["operators"] == ["0.0.0.0/0"], ssh


def test_an_ipv6_jump_host_needs_its_ipv4_source() -> None:
    values, _ = read_stack_values(stack_file("staging"))
    key = json.loads(values[f"{PROJECT}:access"])["jumpHost"]["hostKey"]
    access = {"via": "private", "jumpHost": {"host": "2001:db8::20", "hostKey": key}}
    _fails(["firewall.jumpHostFrom: required because access.jumpHost.host 2001:db8::20 is an IPv6 address"], access=access)
    _passes(access=access, firewall={**_prod("firewall"), "jumpHostFrom": ["198.51.100.20/32"]})


@pytest.mark.parametrize("cidrs", [["0.0.0.0/0"], ["::/0"], ["198.51.0.0/16"], ["10.0.0.1/8"], [ANYWHERE]])
def test_jenkins_token_bound_networks_are_networks_not_the_internet(cidrs: list[str]) -> None:
    vault = _edited("vault", lambda v: v["jenkins"].update(tokenBoundCidrs=cidrs))
    _fails(["vault.jenkins.tokenBoundCidrs[0]"], vault=vault)
