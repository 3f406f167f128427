"""The databases' settings (``databases``: the catalogue's services added to or overridden) and what they
declare: each container's host port (the swarm's members only), each service's credentials, the backups
of the engines that have one, the memory. No Pulumi here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Optional

from pydantic import AfterValidator, Field

from components.shared.model import Model, Port, server_name
from components.shared.service import SWARM_MEMBERS, BackupSource, Credentials, Declaration, Listener, Placement, Service

from .backup_coverage import engine_coverage
from .catalogue import CATALOGUE, DATABASE_SERVERS, ENGINES, Container, containers, template_problems
from .catalogue import Service as CatalogueService

if TYPE_CHECKING:
    from components.config import StackConfig


def _engine_name(value: str) -> str:
    if value not in ENGINES:
        raise ValueError(f"unknown engine {value!r} (known engines: {', '.join(sorted(ENGINES))})")
    return value


def _database_server(value: str) -> str:
    if value not in DATABASE_SERVERS:
        raise ValueError(f"{value!r} is not a database server (databases run on {' or '.join(DATABASE_SERVERS)})")
    return value


def _distinct(values: list[str]) -> list[str]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} listed more than once")
    return values


EngineName = Annotated[str, AfterValidator(_engine_name)]
DatabaseServerName = Annotated[str, AfterValidator(_database_server)]
ServiceName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*[a-z0-9]$", max_length=48)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
ContainerMemory = Annotated[int, Field(ge=64)]


class DatabaseService(Model):
    """A service added to the catalogue, or the fields of a catalogue service a stack overrides.

    ``env`` is merged into the catalogue's map (a ``null`` value removes a key); the other fields replace.
    """

    server: Optional[DatabaseServerName] = None
    engines: Optional[Annotated[list[EngineName], AfterValidator(_distinct), Field(min_length=1)]] = None
    env: dict[EnvName, Optional[str]] = Field(default_factory=dict)
    host_ports: dict[EngineName, Port] = Field(default_factory=dict, alias="hostPorts")
    memory_mib: dict[EngineName, ContainerMemory] = Field(default_factory=dict, alias="memoryMib")


class Databases(Model):
    """Sizes per engine (``memoryMib``, MiB per container) and services added or overridden."""

    memory_mib: dict[EngineName, ContainerMemory] = Field(default_factory=dict, alias="memoryMib")
    services: dict[ServiceName, DatabaseService] = Field(default_factory=dict)

    def catalogue(self) -> tuple[CatalogueService, ...]:
        """The catalogue with this stack's overrides applied, then the services it adds, in order."""
        merged: dict[str, CatalogueService] = {s.name: s for s in CATALOGUE}
        for name, override in self.services.items():
            base = merged.get(name)
            env = {**(base.env if base else {}), **override.env}
            merged[name] = CatalogueService(
                name=name,
                server=override.server or (base.server if base else ""),
                engines=tuple(override.engines or (base.engines if base else ())),
                env={k: v for k, v in env.items() if v is not None},
                host_ports={**(base.host_ports if base else {}), **override.host_ports},
                memory_mib={**(base.memory_mib if base else {}), **override.memory_mib},
            )
        return tuple(merged.values())

    def containers(self) -> list[Container]:
        return containers(self.catalogue(), self.memory_mib)

    def problems(self) -> list[str]:
        """Cross-field mistakes, each naming its key path; empty when the section is consistent."""
        problems: list[str] = []
        catalogued = {s.name: s for s in CATALOGUE}
        for name, override in self.services.items():
            path = f"databases.services.{name}"
            base_env = catalogued[name].env if name in catalogued else {}
            problems += [
                f"{path}.env.{key}: null removes a catalogue variable, and {name} has no {key} in the catalogue"
                + (f" (its variables: {', '.join(sorted(base_env))})" if base_env else "")
                for key, value in override.env.items()
                if value is None and key not in base_env
            ]
            if name not in catalogued:
                for key, value in (("server", override.server), ("engines", override.engines)):
                    if value is None:
                        problems.append(
                            f"{path}.{key}: required for a service not in the catalogue ({', '.join(sorted(catalogued))})"
                        )
        services = self.catalogue()
        for service in services:
            path = f"databases.services.{service.name}"
            if not service.server or not service.engines:
                continue
            own_env = self.services.get(service.name, DatabaseService()).env
            for key, template in service.env.items():
                origin = "" if key in own_env else " (from the catalogue: override it, or remove it with null)"
                problems += [f"{path}.env.{key}: {p}{origin}" for p in template_problems(template, service.engines)]
            for field_key, values in (("hostPorts", service.host_ports), ("memoryMib", service.memory_mib)):
                for engine in values:
                    if engine not in service.engines:
                        problems.append(f"{path}.{field_key}.{engine}: {service.name} does not use {engine}")
        if problems:
            return problems
        used = {engine for service in services for engine in service.engines}
        problems += [
            f"databases.memoryMib.{engine}: no database service of this stack uses {engine} (engines in use: {', '.join(sorted(used))})"
            for engine in self.memory_mib
            if engine not in used
        ]
        explicit = {(s.name, e) for s in services for e in s.host_ports}
        taken: dict[tuple[str, int], Container] = {}
        for container in containers(services, self.memory_mib):
            other = taken.setdefault((container.server, container.host_port), container)
            if other is container:
                continue
            blamed = container if (container.service, container.engine) in explicit else other
            if (blamed.service, blamed.engine) in explicit:
                where = f"databases.services.{blamed.service}.hostPorts.{blamed.engine}"
            else:
                where = "databases.services"
            problems.append(
                f"{where}: host port {container.host_port} on {container.server} is taken by both "
                f"{other.name} and {container.name}; give one of them another hostPorts value"
            )
        return problems



def container_key(settings: Databases, container: Container) -> str:
    """The config key that sets a container's host port, or names it by its engine."""
    own = settings.services.get(container.service)
    key = f"databases.services.{container.service}"
    return key + (f".hostPorts.{container.engine}" if own and container.engine in own.host_ports else f" ({container.engine})")


def declare(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
    settings = config.databases
    placed = settings.containers()
    return Declaration(
        # The services using these databases run on the swarm.
        listeners=tuple(
            Listener(c.server, c.host_port, container_key(settings, c), f"{c.engine} ({c.service})", (SWARM_MEMBERS,), configured=True)
            for c in placed
        ),
        backups=tuple(
            BackupSource(c.server, c.name, method, c.name, c.spec.data_path)
            for c in placed
            if (method := engine_coverage(c.service, c.engine).method) is not None
        ),
        not_backed_up={
            c.name: engine_coverage(c.service, c.engine).reason for c in placed if engine_coverage(c.service, c.engine).method is None
        },
        credentials=tuple(
            Credentials(service.name, tuple(service.env), f"databases.services.{service.name}.env")
            for service in settings.catalogue()
        ),
        placements=tuple(Placement(server_name(c.server), c.name, c.memory_mib) for c in placed),
    )


SERVICE = Service("databases", declare)
