"""Who may reach the servers' private ports (``firewall``), and the networks each kind of client connects
from. No Pulumi here."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from pydantic import Field

from components.shared.model import BridgeNetwork, Model, Network
from components.shared.service import JENKINS, JUMP_HOST, OPERATORS, PULUMI

if TYPE_CHECKING:
    from components.config import StackConfig


class FirewallSettings(Model):
    """Who may reach the servers' private ports besides each other (components/platform/firewall/component.py).

    ``operators``: the operators' networks (SSH to every server, admin UIs such as MinIO's console).
    ``pulumiFrom``: the address(es) of the machine that runs Pulumi (SSH, and the Vault and MinIO API
    ports its providers call); by default the application server, where the seed clones this repository.
    ``jumpHostFrom``: the address the jump host's connections come from, when ``access.jumpHost.host`` is
    neither an IP address nor one of the servers. ``jenkins``: the networks Jenkins' agents connect from
    (Vault's API, and SSH to swarm-master for the deploy key, ``swarm.deployKey``); unset, neither is open
    to Jenkins. ``dockerBridge``: the default bridge network's
    subnet (daemon.json ``bip``), the source address of Nginx's container reaching a host-network service.

    Every source list is of the type ``Network`` (a firewall source: IPv4, not the whole internet but as
    the named opt-in ``anywhere``, which is read as 0.0.0.0/0; components/shared/model.py: FIREWALL_SOURCE),
    and checked against the servers and the bridge by ``components/config.py: network_problems``.
    """

    enabled: bool = True
    operators: list[Network] = Field(min_length=1)
    pulumi_from: Optional[list[Network]] = Field(default=None, alias="pulumiFrom", min_length=1)
    jump_host_from: Optional[list[Network]] = Field(default=None, alias="jumpHostFrom", min_length=1)
    jenkins: Optional[list[Network]] = Field(default=None, min_length=1)
    docker_bridge: BridgeNetwork = Field(default="172.17.0.0/16", alias="dockerBridge")



@dataclass(frozen=True)
class Source:
    """A client of an opening, with the networks it connects from."""

    label: str
    networks: tuple[str, ...]


def _host_network(address: str) -> str:
    return str(ipaddress.ip_network(address))


def jump_host_sources(config: StackConfig) -> list[str]:
    """Networks the jump host's SSH connections come from (empty without a jump host)."""
    jump = config.access.jump_host
    if jump is None:
        return []
    if config.firewall.jump_host_from:
        return list(config.firewall.jump_host_from)
    for server in config.servers.values():
        # One of the servers is the bastion: towards the others it connects from its private IP.
        if jump.host in (server.private_ip, server.public_address):
            return [f"{server.private_ip}/32"]
    return [str(ipaddress.ip_network(jump.host))]


def client_sources(config: StackConfig, groups: Mapping[str, tuple[str, ...]]) -> dict[str, Source]:
    """Every client an opening may name, but the containers of the listening server (the firewall's
    ``dockerBridge``): the operators, Pulumi, the jump host, Jenkins, each server, and each group of
    servers a service declares."""
    settings = config.firewall
    private_ips: dict[str, str] = {name: server.private_ip for name, server in config.servers.items()}
    pulumi_from = settings.pulumi_from or [private_ips["application"]]
    sources: dict[str, Source] = {
        OPERATORS: Source("operators", tuple(settings.operators)),
        PULUMI: Source("Pulumi", tuple(_host_network(n) for n in pulumi_from)),
        JUMP_HOST: Source("jump host", tuple(jump_host_sources(config))),
        JENKINS: Source("Jenkins", tuple(settings.jenkins or ())),
        **{name: Source(name, (_host_network(ip),)) for name, ip in private_ips.items()},
    }
    for group, members in groups.items():
        sources[group] = Source(group.replace("-", " "), tuple(_host_network(private_ips[m]) for m in members))
    return sources


def container_source(settings: FirewallSettings, server: str) -> Source:
    """The containers on ``server``'s default bridge (Nginx's, reaching a host-network service)."""
    return Source(f"containers on {server}", (settings.docker_bridge,))


