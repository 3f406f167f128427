"""The services of the deployment, and what is gathered from what they declare from config alone.

``services()`` lists every service (and the servers' own SSH) in the order they declare and are built;
each declares the same few things (``components/shared/service.py``). ``load_deployment`` checks the
declarations against each other and hands the gathered lists on in the ``Deployment``: the upstreams to
the edge, the backup sources to the backups, the openings to the firewall. ``BACKING`` are the backing
services that consume no other service's outputs: ``__main__.py`` builds each with ``build(inputs)``, so
adding one is its package plus one line there. The lab decides from the same lists what its small
machine can hold (``lab/stack.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional, Protocol

from components.config import StackConfig
from components.platform.host import settings as servers
from components.platform.host.component import BuildInputs
from components.services.backups import settings as backups
from components.services.databases import settings as databases
from components.services.edge import settings as edge
from components.services.mirror import settings as mirror
from components.services.observability import component as observability
from components.services.registry import settings as registry
from components.services.storage import settings as storage
from components.services.swarm import settings as swarm
from components.services.vault import settings as vault
from components.shared.service import BackupSource, Declaration, Opening, Placement, Service, Upstream


class Built(Protocol):
    """A service as built: the stack outputs it adds."""

    @property
    def exports(self) -> Mapping[str, object]: ...


class Backing(Protocol):
    """A backing service's component module: its ``SERVICE``, and ``build``, which makes its component
    from its own settings."""

    SERVICE: Service

    def build(self, inputs: BuildInputs) -> Built: ...


# Built by __main__.py in this order, after storage and the registry, before Nginx.
BACKING: tuple[Backing, ...] = (observability,)


def services() -> tuple[Service, ...]:
    """Every service in the order they declare and are built; each may read what those before it declared."""
    return (
        servers.SERVICE,
        databases.SERVICE,
        vault.SERVICE,
        storage.SERVICE,
        registry.SERVICE,
        mirror.SERVICE,
        *(module.SERVICE for module in BACKING),
        edge.SERVICE,
        swarm.SERVICE,
        backups.SERVICE,
    )


def declarations(config: StackConfig) -> dict[str, Declaration]:
    """What every service declares from ``config``, by service name."""
    declared: dict[str, Declaration] = {}
    for service in services():
        declared[service.name] = service.declare(config, tuple(declared.values()))
    return declared


def backup_sources(config: StackConfig, declared: Optional[Mapping[str, Declaration]] = None) -> list[BackupSource]:
    """Every backup target the services declare (none with backups disabled)."""
    if not config.backups.enabled:
        return []
    return [source for declaration in (declared or declarations(config)).values() for source in declaration.backups]


def not_backed_up(config: StackConfig) -> dict[str, str]:
    """Everything stateful that has no backup, with the reason (for the plan and docs/backups.md)."""
    return {what: why for declaration in declarations(config).values() for what, why in declaration.not_backed_up.items()}


def stack_placements(config: StackConfig) -> list[Placement]:
    return placements(declarations(config))


def stack_upstreams(config: StackConfig) -> list[Upstream]:
    """Every upstream a route may name in this stack, each declared by the service that runs it."""
    return upstreams(declarations(config))


def placements(declared: Mapping[str, Declaration]) -> list[Placement]:
    return [placement for declaration in declared.values() for placement in declaration.placements]


def upstreams(declared: Mapping[str, Declaration]) -> list[Upstream]:
    return [upstream for declaration in declared.values() for upstream in declaration.upstreams]


def openings(declared: Mapping[str, Declaration]) -> list[Opening]:
    """What the host firewall lets through, service by service."""
    return [opening for declaration in declared.values() for opening in declaration.all_openings]


def groups(declared: Mapping[str, Declaration]) -> dict[str, tuple[str, ...]]:
    """The groups of servers the openings' clients may name."""
    return {name: members for declaration in declared.values() for name, members in declaration.groups.items()}
