"""Capacity planning from config alone, so an overcommitted server fails `pulumi preview` early.

Each service declares its ``Placement``s (``components/shared/service.py``): what it will put on which
server and how much memory that is allowed to use (its container memory limits, or an installer's
stated minimum). ``check_capacity`` compares the sum per server with the server's declared size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from components.shared.model import ConfigError, ServerName
from components.shared.service import Placement

from .config import StackConfig


def capacity_table(config: StackConfig, placements: Iterable[Placement]) -> str:
    by_server: dict[str, list[Placement]] = defaultdict(list)
    for placement in placements:
        if placement.memory_mib or not placement.disk_gib:
            by_server[placement.server].append(placement)
    lines = [f"{'server':<14} {'what':<40} {'MiB':>8}"]
    for name, server in config.servers.items():
        placed = by_server.get(name, [])
        for p in placed:
            lines.append(f"{name:<14} {p.what:<40} {p.memory_mib:>8}")
        total = sum(p.memory_mib for p in placed)
        lines.append(f"{name:<14} {'= total / usable of declared':<40} {total:>8} / {usable_mib(config, name)} of {server.memory_mib}")
    return "\n".join(lines)


def disk_table(config: StackConfig, placements: Iterable[Placement]) -> str:
    lines = [f"{'server':<14} {'what':<40} {'GiB':>8}"]
    for name, server in config.servers.items():
        placed = [p for p in placements if p.server == name and p.disk_gib]
        for p in placed:
            lines.append(f"{name:<14} {p.what:<40} {p.disk_gib:>8}")
        if placed:
            declared = f"{usable_gib(config, name)} of {server.disk_gib}" if server.disk_gib else "not declared (diskGib)"
            lines.append(f"{name:<14} {'= total / usable of declared':<40} {round(sum(p.disk_gib for p in placed), 1):>8} / {declared}")
    return "\n".join(lines)


def usable_gib(config: StackConfig, server: ServerName) -> float:
    disk = config.servers[server].disk_gib or 0
    return round(disk * (100 - config.capacity.headroom_percent) / 100, 1)


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
        disk = round(sum(p.disk_gib for p in placed), 1)
        if server.disk_gib is not None and disk > usable_gib(config, name):
            what = ", ".join(f"{p.what} ({p.disk_gib} GiB)" for p in placed if p.disk_gib)
            problems.append(
                f"servers.{name}.diskGib: {server.disk_gib} GiB with {config.capacity.headroom_percent}% headroom "
                f"leaves {usable_gib(config, name)} GiB, but {disk} GiB is placed there: {what}"
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
            + "\n\n"
            + disk_table(config, placements)
        )
