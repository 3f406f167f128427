"""A host firewall on every server, generated from the wiring: who may reach which private port.

Services declare what they listen on and who legitimately connects (``Listener``, ``Opening`` in
``components/shared/service.py``); ``__main__.py`` hands the openings gathered from every declaration to
``Firewall`` with the networks of each client (``settings.client_sources``), and it writes, per server,
two chains of its own:

- ``SAMARTH-INPUT`` (jumped to from INPUT): listeners on the host's network (SSH, Vault, the swarm's
  ports, ESP). SSH's rules come first, after the rule that keeps established connections.
- ``SAMARTH-DOCKER-USER`` (jumped to from DOCKER-USER): ports Docker publishes. DOCKER-USER sees
  packets after DNAT, so a published port is matched by its original destination port
  (``-m conntrack --ctstate DNAT --ctorigdstport``), which also leaves container-to-container traffic
  that happens to use the same port number alone.

For each opening: allowed sources ``RETURN`` (Docker's and the host's own rules then apply as before),
everything else to that port is dropped; ports nobody declared are not touched. The rules are applied
with ``iptables-restore --noflush`` in one transaction (a rule that fails leaves the old ones in place),
kept in /etc/samarth/firewall.rules and re-applied by a systemd unit ordered after docker.service, so
reboots and dockerd restarts keep them. See docs/firewall.md for the matrix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_command as command

from components.platform.host.component import Host
from components.shared.model import ServerName
from components.shared.service import CONTAINERS, Opening
from components.shared.shell import render

from .settings import FirewallSettings, Source, container_source

INPUT_CHAIN = "SAMARTH-INPUT"
PUBLISHED_CHAIN = "SAMARTH-DOCKER-USER"
RULES_FILE = "/etc/samarth/firewall.rules"
APPLY_PROGRAM = "/usr/local/sbin/samarth-firewall-apply"
UNIT = "samarth-firewall.service"

UNIT_TEXT = f"""\
# Written by samarth-infra (components/firewall.py). Re-applies the host firewall at boot and after
# every start of dockerd (PartOf), once Docker has created its own chains.
[Unit]
Description=samarth-infra host firewall ({RULES_FILE})
After=network-pre.target docker.service
PartOf=docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh {APPLY_PROGRAM} {RULES_FILE}

[Install]
WantedBy=multi-user.target docker.service
"""


@dataclass(frozen=True)
class Row:
    """One line of the matrix: ``service`` on ``server`` port/protocol, reachable from ``sources`` only."""

    server: str
    service: str
    port: int
    protocol: str
    chain: str
    sources: tuple[Source, ...]

    @property
    def target(self) -> str:
        return self.protocol if self.protocol == "esp" else f"{self.port}/{self.protocol}"


def matrix(
    openings: Sequence[Opening], clients: Mapping[str, Source], settings: FirewallSettings, ssh_ports: Mapping[str, int]
) -> list[Row]:
    """Every opening with its clients as addresses (``clients``: every client but the listening server's
    containers); SSH first on each server, then by port."""
    rows: list[Row] = []
    for opening in openings:
        found = (container_source(settings, opening.server) if c == CONTAINERS else clients[c] for c in opening.clients)
        sources = tuple(source for source in found if source.networks)
        chain = PUBLISHED_CHAIN if opening.published else INPUT_CHAIN
        rows.append(Row(opening.server, opening.service, opening.port, opening.protocol, chain, sources))
    return sorted(rows, key=lambda r: (r.server, r.port != ssh_ports.get(r.server), r.protocol == "esp", r.port, r.protocol))


def row_export(row: Row) -> dict[str, object]:
    """A matrix row as the stack output ``firewall`` lists it (and the plan prints it)."""
    return {
        "server": row.server,
        "service": row.service,
        "port": row.target,
        "chain": "DOCKER-USER" if row.chain == PUBLISHED_CHAIN else "INPUT",
        "from": {source.label: list(source.networks) for source in row.sources},
    }


def _match(row: Row) -> str:
    if row.protocol == "esp":
        return "-p esp"
    if row.chain == PUBLISHED_CHAIN:
        return f"-p {row.protocol} -m conntrack --ctstate DNAT --ctorigdstport {row.port} --ctdir ORIGINAL"
    return f"-p {row.protocol} -m {row.protocol} --dport {row.port}"


def render_rules(rows: Sequence[Row]) -> str:
    """The ``-A`` lines of one server's two chains, for ``iptables-restore --noflush``."""
    lines: list[str] = []
    for chain in (INPUT_CHAIN, PUBLISHED_CHAIN):
        chain_rows = [r for r in rows if r.chain == chain]
        lines.append(f"-A {chain} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN")
        if chain == INPUT_CHAIN:
            lines.append(f"-A {chain} -i lo -j RETURN")
        # Several openings of one port (a service and the backups that reach it) share one DROP, after
        # the RETURNs of all their sources.
        allowed: dict[str, set[str]] = {}
        for row in chain_rows:
            allowed.setdefault(_match(row), set()).update(n for source in row.sources for n in source.networks)
        for match, networks in allowed.items():
            lines += [f"-A {chain} -s {network} {match} -j RETURN" for network in sorted(networks)]
            lines.append(f"-A {chain} {match} -j DROP")
    return "\n".join(lines) + "\n"


def ssh_sources(rows: Sequence[Row], ssh_port: int) -> list[str]:
    return sorted(
        {n for r in rows if r.chain == INPUT_CHAIN and r.port == ssh_port and r.protocol == "tcp" for s in r.sources for n in s.networks}
    )


def matrix_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The exported matrix (``row_export``) as a Markdown table: the plan prints it, docs/firewall.md
    shows prod's."""
    lines = ["| server | service | port | filtered in | allowed from |", "|---|---|---|---|---|"]
    for row in rows:
        sources = "; ".join(f"{label} ({', '.join(networks)})" for label, networks in row["from"].items())
        lines.append(f"| {row['server']} | {row['service']} | {row['port']} | {row['chain']} | {sources or 'nobody (closed)'} |")
    return "\n".join(lines) + "\n"


def apply_script(server: str, rules: str, ssh_port: int, allowed_ssh: Sequence[str]) -> str:
    return render(
        "firewall.sh",
        f"firewall[{server}]",
        SERVER=server,
        RULES=rules,
        RULES_FILE=RULES_FILE,
        APPLY_PROGRAM=APPLY_PROGRAM,
        APPLY_TEXT=render("firewall-apply.sh", "samarth-firewall-apply", RULES_FILE=RULES_FILE),
        UNIT=UNIT,
        UNIT_TEXT=UNIT_TEXT,
        SSH_PORT=ssh_port,
        SSH_SOURCES=" ".join(allowed_ssh),
    )


def remove_script(server: str) -> str:
    return render("firewall-remove.sh", f"firewall-remove[{server}]", SERVER=server, RULES_FILE=RULES_FILE, APPLY_PROGRAM=APPLY_PROGRAM, UNIT=UNIT)


@dataclass(frozen=True)
class FirewallArgs:
    hosts: Mapping[ServerName, Host]
    settings: FirewallSettings
    # What every service listens on and who connects to it (``Deployment.openings``).
    openings: Sequence[Opening]
    # The networks of every client an opening names but the listening server's containers.
    clients: Mapping[str, Source]


class Firewall(pulumi.ComponentResource):
    """The generated rules, applied on every server that has openings."""

    rows: list[Row]

    def __init__(self, name: str, args: FirewallArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:firewall:Firewall", name, None, opts)
        ssh_ports: dict[str, int] = {name: host.spec.ssh_port for name, host in args.hosts.items()}
        self.rows = matrix(args.openings, args.clients, args.settings, ssh_ports)
        digests: dict[str, str] = {}
        for server, host in args.hosts.items():
            rows = [r for r in self.rows if r.server == server]
            if not rows or not args.settings.enabled:
                continue
            rules = render_rules(rows)
            digests[server] = hashlib.sha256(rules.encode()).hexdigest()[:12]
            ssh_port = ssh_ports[server]
            command.remote.Command(
                f"{name}-{server}",
                connection=host.connection,
                create=apply_script(server, rules, ssh_port, ssh_sources(rows, ssh_port)),
                delete=remove_script(server),
                opts=host.command_options(self),
            )
        self.exports = {"firewall": [row_export(row) for row in self.rows]}
        self.register_outputs({"rulesSha256": digests})
