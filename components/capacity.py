"""Capacity planning from config alone, so an overcommitted server fails `pulumi preview` early.

Each component module offers ``placements(config) -> list[Placement]``: what it will put on which
server and how much memory that is allowed to use (its container memory limits, or an installer's
stated minimum). ``check_capacity`` compares the sum per server with the server's declared size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from .config import ConfigError, ServerName, StackConfig


@dataclass(frozen=True)
class Placement:
    server: ServerName
    what: str
    memory_mib: int
    min_cpus: int = 0


def capacity_table(config: StackConfig, placements: Iterable[Placement]) -> str:
    by_server: dict[str, list[Placement]] = defaultdict(list)
    for placement in placements:
        by_server[placement.server].append(placement)
    lines = [f"{'server':<14} {'what':<40} {'MiB':>8}"]
    for name, server in config.servers.items():
        placed = by_server.get(name, [])
        for p in placed:
            lines.append(f"{name:<14} {p.what:<40} {p.memory_mib:>8}")
        total = sum(p.memory_mib for p in placed)
        lines.append(f"{name:<14} {'= total / usable of declared':<40} {total:>8} / {usable_mib(config, name)} of {server.memory_mib}")
    return "\n".join(lines)


def usable_mib(config: StackConfig, server: ServerName) -> int:
    return config.servers[server].memory_mib * (100 - config.capacity.headroom_percent) // 100


class CapacityError(ConfigError):
    """The placements do not fit the servers' declared memory or CPUs."""


def check_capacity(config: StackConfig, placements: Iterable[Placement]) -> None:
    """Raise ``ConfigError`` naming every server whose placements do not fit, with the full table."""
    placements = list(placements)
    problems: list[str] = []
    for name, server in config.servers.items():
        placed = [p for p in placements if p.server == name]
        total = sum(p.memory_mib for p in placed)
        if total > usable_mib(config, name):
            what = ", ".join(f"{p.what} ({p.memory_mib} MiB)" for p in placed)
            problems.append(
                f"servers.{name}.memoryMib: {server.memory_mib} MiB with {config.capacity.headroom_percent}% headroom "
                f"leaves {usable_mib(config, name)} MiB, but {total} MiB is placed there: {what}"
            )
        for p in placed:
            if p.min_cpus > server.cpus:
                problems.append(f"servers.{name}.cpus: {p.what} needs at least {p.min_cpus} CPUs, {server.cpus} declared")
    if problems:
        raise CapacityError(
            "capacity: the services placed on these servers do not fit:\n  "
            + "\n  ".join(problems)
            + "\n\n"
            + capacity_table(config, placements)
        )
