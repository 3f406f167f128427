"""The stack's configuration, validated as a whole before any resource is registered.

Pulumi hands the program one JSON document per top-level key (``samarth-infra:servers`` and so on).
``load_stack_config`` turns them into typed, frozen models and raises ``ConfigError`` naming the key
path and what is wrong, so a bad stack file stops ``pulumi preview`` before anything is planned.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .backup_catalogue import METHODS as BACKUP_METHODS
from .catalogue import CATALOGUE, DATABASE_SERVERS, ENGINES, Container, Service, containers, template_problems

SERVER_NAMES = ("application", "db1", "db2", "swarm-master", "swarm-node2", "swarm-node3")
ServerName = Literal["application", "db1", "db2", "swarm-master", "swarm-node2", "swarm-node3"]

# RFC 1918 plus RFC 6598 (carrier-grade NAT), the ranges a cloud hands out as private addresses.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)

MOVING_REFS = frozenset({"latest", "main", "master", "develop", "dev", "head", "stable", "nightly", "edge"})


class ConfigError(ValueError):
    """A stack configuration problem; the message names every offending key path."""


class Model(BaseModel):
    """Strict base: unknown keys (typos) are errors, and validated config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _private_ipv4(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    if not any(address in network for network in PRIVATE_NETWORKS):
        ranges = ", ".join(str(n) for n in PRIVATE_NETWORKS)
        raise ValueError(f"{value} is not a private address (expected one of {ranges})")
    return value


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.I)


def _address(value: str) -> str:
    """An IP address or a DNS name."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", value) or not _HOSTNAME.match(value):
        raise ValueError(f"{value!r} is neither an IP address nor a host name")
    return value


def _domain(value: str) -> str:
    if "." not in value or not _HOSTNAME.match(value):
        raise ValueError(f"{value!r} is not a DNS domain")
    return value.lower()


def _image_ref(value: str) -> str:
    """``name:tag`` or ``name@sha256:...``; a missing tag or a moving tag is refused."""
    if any(c.isspace() for c in value) or not value:
        raise ValueError(f"{value!r} is not an image reference")
    if "@" in value:
        _, digest = value.split("@", 1)
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ValueError(f"{value!r} has a malformed digest (expected sha256:<64 hex>)")
        return value
    last = value.rsplit("/", 1)[-1]
    if ":" not in last:
        raise ValueError(f"{value!r} has no tag; pin a version such as {value}:1.2.3")
    tag = last.split(":", 1)[1]
    if not tag or tag.lower() in MOVING_REFS:
        raise ValueError(f"{value!r} uses the moving tag {tag!r}; pin a version")
    return value


def _release_ref(value: str) -> str:
    """A release tag or commit of an external repository; branch-like names are refused."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", value):
        raise ValueError(f"{value!r} is not a release tag or commit")
    if value.lower() in MOVING_REFS:
        raise ValueError(f"{value!r} is a moving reference; pin a release tag or commit")
    return value


PrivateIPv4 = Annotated[str, AfterValidator(_private_ipv4)]
Address = Annotated[str, AfterValidator(_address)]
Domain = Annotated[str, AfterValidator(_domain)]
ImageRef = Annotated[str, AfterValidator(_image_ref)]
ReleaseRef = Annotated[str, AfterValidator(_release_ref)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Server(Model):
    """One machine of the deployment, as the operator declares it."""

    private_ip: PrivateIPv4 = Field(alias="privateIp")
    public_address: Optional[Address] = Field(default=None, alias="publicAddress")
    ssh_user: str = Field(default="samarth-devops", alias="sshUser", min_length=1, pattern=r"^[a-z_][a-z0-9_.-]*$")
    ssh_port: Port = Field(default=22, alias="sshPort")
    memory_mib: int = Field(alias="memoryMib", ge=512)
    cpus: int = Field(ge=1)
    host_key: Optional[str] = Field(default=None, alias="hostKey", min_length=16)
    # Disk space the server offers to what the program keeps there (backup repositories); unset: not checked.
    disk_gib: Optional[int] = Field(default=None, alias="diskGib", ge=1)


class JumpHost(Model):
    host: Address
    user: str = Field(default="samarth-devops", min_length=1)
    port: Port = 22


class Access(Model):
    """How the machine running Pulumi reaches the servers.

    The seed clones this repository on the application server, so by default every server is reached
    over its private IP. ``via: public`` uses each server's public address instead; a ``jumpHost``
    tunnels either through a bastion (``ssh -J``).
    """

    via: Literal["private", "public"] = "private"
    jump_host: Optional[JumpHost] = Field(default=None, alias="jumpHost")


class Versions(Model):
    """Every image and external release the program deploys, pinned. Promotion copies this map."""

    postgres: ImageRef
    redis: ImageRef
    rabbitmq: ImageRef
    elasticsearch: ImageRef
    # HashiCorp Vault or a compatible build (OpenBao); ``vault.distribution`` says which.
    vault: ImageRef
    # getsentry/self-hosted release tag, and the posthog-deploy commit (it has no release tags).
    sentry: ReleaseRef
    posthog: ReleaseRef
    # MinIO's community image is in maintenance mode: point this at a maintained compatible build if needed.
    minio: ImageRef
    registry: ImageRef
    nginx: ImageRef
    # restic's official image: the backup agents copy its static binary onto each server.
    restic: ImageRef


class Capacity(Model):
    headroom_percent: int = Field(default=10, alias="headroomPercent", ge=0, le=90)


SWARM_MANAGER = "swarm-master"
SWARM_WORKERS = ("swarm-node2", "swarm-node3")
SwarmWorker = Literal["swarm-node2", "swarm-node3"]
# Labels the program sets on every swarm node itself (see components/swarm.py).
SWARM_AUTOMATIC_LABELS = ("role", "memory_mib")
LabelKey = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")]
LabelValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/-]{0,128}$")]


class Swarm(Model):
    """The Docker Swarm over swarm-master (manager) and its workers.

    ``workers`` lists the servers that are members: taking one out drains it, makes it leave and
    removes it from the node list. ``labels`` are extra node labels per member, for placement
    constraints (``node.labels.<key>``); ``role`` and ``memory_mib`` are set by the program.
    """

    workers: list[SwarmWorker] = Field(default_factory=lambda: list(SWARM_WORKERS))
    labels: dict[ServerName, dict[LabelKey, LabelValue]] = Field(default_factory=dict)
    encrypt_overlay: bool = Field(default=True, alias="encryptOverlay")
    registry_login: bool = Field(default=True, alias="registryLogin")

    @property
    def members(self) -> tuple[str, ...]:
        return (SWARM_MANAGER, *self.workers)


class VaultTls(Model):
    """TLS for Vault's listeners; the certificate and key are files already on the application server."""

    cert_file: str = Field(alias="certFile", pattern=r"^/")
    key_file: str = Field(alias="keyFile", pattern=r"^/")
    # CA bundle the machine running Pulumi uses to verify Vault; empty means the system's trust store.
    ca_file: Optional[str] = Field(default=None, alias="caFile", pattern=r"^/")
    # Name the certificate is issued for, when it is not the application server's private IP.
    server_name: Optional[Address] = Field(default=None, alias="serverName")


class VaultJenkins(Model):
    """The AppRole Jenkins logs in with: short-lived tokens, optionally bound to Jenkins' addresses."""

    token_ttl_seconds: int = Field(default=1200, alias="tokenTtlSeconds", ge=60)
    token_max_ttl_seconds: int = Field(default=3600, alias="tokenMaxTtlSeconds", ge=60)
    token_bound_cidrs: tuple[str, ...] = Field(default=(), alias="tokenBoundCidrs")

    @model_validator(mode="after")
    def _ttl_within_max(self) -> "VaultJenkins":
        if self.token_ttl_seconds > self.token_max_ttl_seconds:
            raise ValueError(
                f"tokenTtlSeconds ({self.token_ttl_seconds}) is more than tokenMaxTtlSeconds ({self.token_max_ttl_seconds})"
            )
        for cidr in self.token_bound_cidrs:
            try:
                ipaddress.ip_network(cidr)
            except ValueError:
                raise ValueError(f"tokenBoundCidrs: {cidr!r} is not a CIDR block") from None
        return self


class VaultSettings(Model):
    """Vault on the application server: how it is built, sealed and reached (see components/vault.py)."""

    distribution: Literal["vault", "openbao"] = "vault"
    key_shares: int = Field(default=5, alias="keyShares", ge=1, le=10)
    key_threshold: int = Field(default=3, alias="keyThreshold", ge=1, le=10)
    port: Port = 8200
    cluster_port: Port = Field(default=8201, alias="clusterPort")
    # Addresses Vault advertises; by default the application server's private IP and the ports above.
    api_addr: Optional[str] = Field(default=None, alias="apiAddr", pattern=r"^https?://[^\s/]+$")
    cluster_addr: Optional[str] = Field(default=None, alias="clusterAddr", pattern=r"^https://[^\s/]+$")
    tls: Optional[VaultTls] = None
    memory_mib: int = Field(default=1024, alias="memoryMib", ge=256)
    # HashiCorp Vault only (OpenBao has no mlock). Off by default: with integrated storage HashiCorp
    # strongly recommends `disable_mlock = true` (the raft database is memory-mapped, and locked pages
    # would count against the container's memory limit) and no swap on the host.
    mlock: bool = False
    # File name on the audit volume; the audit device appends one JSON line per request.
    audit_file: str = Field(default="audit.log", alias="auditFile", pattern=r"^[A-Za-z0-9._-]+$")
    jenkins: VaultJenkins = VaultJenkins()

    @model_validator(mode="after")
    def _threshold_within_shares(self) -> "VaultSettings":
        if self.key_threshold > self.key_shares:
            raise ValueError(f"keyThreshold ({self.key_threshold}) is more than keyShares ({self.key_shares})")
        if self.port == self.cluster_port:
            raise ValueError(f"clusterPort: {self.cluster_port} is also the API port")
        return self


def _absolute_path(value: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9._/-]*[A-Za-z0-9._-]", value) or "/../" in f"{value}/":
        raise ValueError(f"{value!r} is not an absolute path (letters, digits and '._-/' only)")
    return value


def _email(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", value):
        raise ValueError(f"{value!r} is not an email address")
    return value


AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
Email = Annotated[str, AfterValidator(_email)]


class SentrySettings(Model):
    """Self-hosted Sentry on the application server; Nginx serves ``hostName`` from ``privateIp:port``.
    ``enabled: false`` leaves it out altogether (install, credentials, route, capacity)."""

    enabled: bool = True
    host_name: Domain = Field(alias="hostName")
    port: Port = 9000
    admin_email: Email = Field(alias="adminEmail")
    retention_days: int = Field(default=90, alias="retentionDays", ge=1, le=3650)
    directory: AbsolutePath = "/opt/samarth/sentry"


class PostHogSettings(Model):
    """PostHog (posthog-deploy) on the application server; Nginx serves ``hostName`` over HTTPS.
    ``enabled: false`` leaves it out altogether (install, credentials, route, capacity)."""

    enabled: bool = True
    host_name: Domain = Field(alias="hostName")
    port: Port = 8023
    directory: AbsolutePath = "/opt/samarth/posthog"


OBSERVABILITY_SERVICES = ("sentry", "posthog")


class ObservabilitySettings(Model):
    sentry: SentrySettings
    posthog: PostHogSettings

    def enabled(self) -> list[str]:
        """Names of the services this stack installs, of ``OBSERVABILITY_SERVICES``."""
        return [name for name in OBSERVABILITY_SERVICES if getattr(self, name).enabled]

    @model_validator(mode="after")
    def _distinct(self) -> "ObservabilitySettings":
        if self.sentry.port == self.posthog.port:
            raise ValueError(f"posthog.port: {self.posthog.port} is already sentry.port")
        if self.sentry.directory == self.posthog.directory:
            raise ValueError(f"posthog.directory: {self.posthog.directory} is already sentry.directory")
        return self


# --- edge: Nginx routes (components/edge.py) -------------------------------------------------------

# Upstreams on the application server that a route can name; "swarm" means swarm-master's routing mesh.
# Sentry and PostHog also get a route from their observability hostName (StackConfig.edge_routes).
APPLICATION_UPSTREAMS = ("registry", "minio", "vault", "sentry", "posthog")
UPSTREAMS = (*APPLICATION_UPSTREAMS, "swarm")


def _url_path(value: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", value):
        raise ValueError(f"{value!r} is not a URL path (starts with '/', letters, digits, '._~/-' only)")
    return value


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a network in CIDR form ({exc})") from None


UrlPath = Annotated[str, AfterValidator(_url_path)]
Network = Annotated[str, AfterValidator(_network)]
HostName = Annotated[str, AfterValidator(_domain)]


class EdgeTls(Model):
    """Certificate and key files on the application server (PEM), mounted read-only into Nginx."""

    certificate_path: AbsolutePath = Field(alias="certificatePath")
    key_path: AbsolutePath = Field(alias="keyPath")


class Route(Model):
    """``host`` (+ ``path``) served by Nginx, proxied to ``upstream``.

    ``upstream`` is an application-server service (its address is the server's private IP) or
    ``swarm``, which needs the ``port`` the swarm publishes. ``allow`` limits the source networks.
    """

    host: HostName
    path: UrlPath = "/"
    upstream: str
    port: Optional[Port] = None
    allow: Optional[list[Network]] = Field(default=None, min_length=1)

    @field_validator("upstream")
    @classmethod
    def _known_upstream(cls, upstream: str) -> str:
        if upstream not in UPSTREAMS:
            raise ValueError(f"unknown upstream {upstream!r} (expected one of {', '.join(UPSTREAMS)})")
        return upstream

    @model_validator(mode="after")
    def _port_and_allow(self) -> "Route":
        if self.upstream == "swarm" and self.port is None:
            raise ValueError("port is required for upstream 'swarm' (the port the swarm service publishes)")
        if self.upstream != "swarm" and self.port is not None:
            raise ValueError(
                f"port is only for swarm routes ({self.upstream!r} listens on its own, configured port)"
            )
        if self.upstream == "vault" and not self.allow:
            raise ValueError("allow is required for upstream 'vault' (the source networks allowed to reach the Vault UI)")
        if self.upstream == "registry" and self.path != "/":
            raise ValueError("path must be '/' for upstream 'registry' (docker clients call /v2/ at the root)")
        return self


class Edge(Model):
    tls: EdgeTls
    routes: list[Route] = Field(min_length=1)

    @field_validator("routes")
    @classmethod
    def _one_registry_route(cls, routes: list[Route]) -> list[Route]:
        registry = [i for i, r in enumerate(routes) if r.upstream == "registry"]
        if len(registry) != 1:
            raise ValueError(
                f"exactly one route must have upstream 'registry' (found {len(registry)}): "
                "it is the registry's public name for docker login"
            )
        return routes


# --- databases (db1, db2): components/catalogue.py holds the services; a stack adds or overrides them.


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

    def catalogue(self) -> tuple[Service, ...]:
        """The catalogue with this stack's overrides applied, then the services it adds, in order."""
        merged: dict[str, Service] = {s.name: s for s in CATALOGUE}
        for name, override in self.services.items():
            base = merged.get(name)
            env = {**(base.env if base else {}), **override.env}
            merged[name] = Service(
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
        catalogued = {s.name for s in CATALOGUE}
        for name, override in self.services.items():
            path = f"databases.services.{name}"
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


# --- backups (components/backups.py): schedules, retention, where repositories live, size estimates.

BackupSchedule = Literal["hourly", "daily", "weekly"]


class BackupRetention(Model):
    """How many snapshots ``restic forget`` keeps per target (``--keep-hourly`` and so on)."""

    hourly: int = Field(default=24, ge=0)
    daily: int = Field(default=14, ge=0)
    weekly: int = Field(default=8, ge=0)
    monthly: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _keeps_something(self) -> "BackupRetention":
        if not (self.hourly or self.daily or self.weekly or self.monthly):
            raise ValueError("keeps no snapshot at all: set at least one of hourly, daily, weekly, monthly")
        return self


class Backups(Model):
    """Scheduled restic backups of every stateful service (see components/backups.py)."""

    enabled: bool = True
    # Per backup method (postgres, redis, rabbitmq, vault-raft, files, swarm); the rest use ``default``.
    schedules: dict[str, BackupSchedule] = Field(default_factory=lambda: {"postgres": "hourly"})
    default_schedule: BackupSchedule = Field(default="daily", alias="defaultSchedule")
    retention: BackupRetention = BackupRetention()
    # The application server's repository (SFTP) lives on this database server.
    application_repository_on: Literal["db1", "db2"] = Field(default="db1", alias="applicationRepositoryOn")
    # Expected size of what each target backs up (GiB), by target name or by method; for the disk estimate.
    data_gib: dict[str, float] = Field(default_factory=dict, alias="dataGib")
    # Share of the data that changes per day (percent): the deduplicated repository grows by it per retained day.
    daily_change_percent: float = Field(default=5, alias="dailyChangePercent", ge=0, le=100)

    @field_validator("schedules")
    @classmethod
    def _known_methods(cls, schedules: dict[str, str]) -> dict[str, str]:
        for method in schedules:
            if method not in BACKUP_METHODS:
                raise ValueError(f"{method!r} is not a backup method (methods: {', '.join(BACKUP_METHODS)})")
        return schedules

    @field_validator("data_gib")
    @classmethod
    def _positive_sizes(cls, sizes: dict[str, float]) -> dict[str, float]:
        for name, size in sizes.items():
            if size < 0:
                raise ValueError(f"{name}: {size} GiB is negative")
        return sizes

    def schedule(self, method: str) -> str:
        return self.schedules.get(method, self.default_schedule)


class StackConfig(Model):
    domain: Domain
    servers: dict[ServerName, Server]
    access: Access = Access()
    versions: Versions
    capacity: Capacity = Capacity()
    swarm: Swarm = Swarm()
    vault: VaultSettings = VaultSettings()
    observability: ObservabilitySettings
    databases: Databases = Databases()
    edge: Edge
    backups: Backups = Backups()

    @model_validator(mode="after")
    def _servers_are_the_six(self) -> "StackConfig":
        missing = [name for name in SERVER_NAMES if name not in self.servers]
        if missing:
            raise ValueError(f"servers: missing {', '.join(missing)} (expected exactly {', '.join(SERVER_NAMES)})")
        seen: dict[str, str] = {}
        for name, server in self.servers.items():
            if server.private_ip in seen:
                raise ValueError(
                    f"servers.{name}.privateIp: {server.private_ip} is already the private IP of {seen[server.private_ip]}"
                )
            seen[server.private_ip] = name
        if self.access.via == "public":
            for name, server in self.servers.items():
                if server.public_address is None:
                    raise ValueError(f"servers.{name}.publicAddress: required because access.via is 'public'")
        return self

    @model_validator(mode="after")
    def _swarm_labels_name_members(self) -> "StackConfig":
        # Here rather than on Swarm so the messages carry the full key path.
        swarm = self.swarm
        if len(set(swarm.workers)) != len(swarm.workers):
            raise ValueError(f"swarm.workers: {', '.join(swarm.workers)} names a worker twice")
        for name, labels in swarm.labels.items():
            if name not in swarm.members:
                raise ValueError(
                    f"swarm.labels.{name}: {name} is not a member of the swarm (members: {', '.join(swarm.members)})"
                )
            for key in labels:
                if key in SWARM_AUTOMATIC_LABELS:
                    raise ValueError(f"swarm.labels.{name}.{key}: {key} is set by the program, choose another key")
        return self


    @model_validator(mode="after")
    def _databases_are_consistent(self) -> "StackConfig":
        problems = self.databases.problems()
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def edge_routes(self) -> list[tuple[str, Route]]:
        """Every route Nginx serves, with the config key it comes from: ``edge.routes``, then Sentry and
        PostHog (when enabled) at their ``observability`` hostName."""
        routes = [(f"edge.routes[{index}]", route) for index, route in enumerate(self.edge.routes)]
        for name in self.observability.enabled():
            settings = getattr(self.observability, name)
            routes.append((f"observability.{name}.hostName", Route(host=settings.host_name, upstream=name)))
        return routes

    @model_validator(mode="after")
    def _edge_routes_are_distinct_and_in_domain(self) -> "StackConfig":
        seen: dict[tuple[str, str], str] = {}
        for key, route in self.edge_routes():
            if route.upstream in OBSERVABILITY_SERVICES and route.upstream not in self.observability.enabled():
                raise ValueError(
                    f"{key}.upstream: {route.upstream!r} is not installed (observability.{route.upstream}.enabled is false)"
                )
            host_key = f"{key}.host" if key.startswith("edge.") else key
            # A route copied from another stack would otherwise serve (and need a certificate for) its names.
            if route.host != self.domain and not route.host.endswith("." + self.domain):
                raise ValueError(f"{host_key}: {route.host!r} is not under domain {self.domain!r}")
            if (route.host, route.path) in seen:
                raise ValueError(
                    f"{key}: host {route.host!r} and path {route.path!r} are already routed by {seen[route.host, route.path]}"
                )
            seen[route.host, route.path] = key
        return self


# Top-level keys the program reads; each is one JSON document in the stack file.
TOP_LEVEL_KEYS = tuple(field.alias or name for name, field in StackConfig.model_fields.items())


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif parts:
            parts.append(f".{part}")
        else:
            parts.append(str(part))
    return "".join(parts)


def _describe(error: Mapping[str, Any]) -> str:
    # Literal keys (server names) and aliased fields come back with pydantic's internal location
    # suffixes; strip them so the path reads like the stack file.
    loc = tuple(p for p in error["loc"] if p not in ("[key]",))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling)"
    elif error["type"] == "literal_error" and error["loc"][-1] == "[key]":
        message = f"unknown server {error['input']!r} (expected one of {', '.join(SERVER_NAMES)})"
    elif error["type"] == "missing":
        message = "required key is missing"
    path = _location(loc)
    return f"{path}: {message}" if path else message


def validate(raw: Mapping[str, Any]) -> StackConfig:
    """Validate plain data (what the stack file holds) into a ``StackConfig`` or raise ``ConfigError``."""
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as exc:
        lines = sorted({_describe(e) for e in exc.errors()})
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(lines)) from None


def validate_versions(raw: Any) -> Versions:
    """The ``versions`` map alone (what promotion copies), with the same key-path messages."""
    try:
        return Versions.model_validate(raw)
    except ValidationError as exc:
        lines = sorted({_describe({**e, "loc": ("versions", *e["loc"])}) for e in exc.errors()})
        raise ConfigError("invalid versions:\n  " + "\n  ".join(lines)) from None


# Read by the program as a secret Output, never through the model, so it cannot end up in a repr.
SECRET_KEYS = ("sshPrivateKey", "vaultInit")


def load_stack_config(project: str, values: Mapping[str, Any]) -> StackConfig:
    """Validate the project's config as the engine hands it over (``"<project>:<key>" -> str``).

    Structured keys arrive as JSON text, scalars as plain text. A key of this project that the
    program does not know is reported, as a typo would otherwise be silently ignored.
    """
    prefix = f"{project}:"
    raw: dict[str, Any] = {}
    unknown: list[str] = []
    for full_key, text in values.items():
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix):]
        if key in SECRET_KEYS:
            continue
        if key not in TOP_LEVEL_KEYS:
            unknown.append(f"{key}: unknown key (check the spelling; known keys: {', '.join(TOP_LEVEL_KEYS + SECRET_KEYS)})")
            continue
        try:
            raw[key] = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError:
            raw[key] = text
    if unknown:
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(sorted(unknown)))
    return validate(raw)


def engine_config() -> dict[str, Any]:
    """All config the engine passed to this program run, whichever channel the language host used."""
    from pulumi.runtime import config as runtime_config

    return {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}


def _secret_setting(
    project: str, values: Mapping[str, Any], secret_keys: frozenset[str], name: str, source: str
) -> Optional[str]:
    """A secret config value, or ``None`` when unset; one stored in plaintext is refused."""
    key = f"{project}:{name}"
    text = values.get(key) or ""
    if not text:
        return None
    if key not in secret_keys:
        raise ConfigError(
            f"invalid stack configuration:\n  {name}: stored in plaintext; "
            f"remove it and run `pulumi config set --secret {name} < {source}`"
        )
    return text


def ssh_private_key(project: str, values: Mapping[str, Any], secret_keys: frozenset[str]) -> Optional[str]:
    """The SSH key from config, or ``None`` to use the SSH agent."""
    return _secret_setting(project, values, secret_keys, "sshPrivateKey", "key")


def engine_secret_keys() -> frozenset[str]:
    from pulumi.runtime import config as runtime_config

    return frozenset(runtime_config._SECRET_KEYS.get()) | frozenset(runtime_config.get_config_secret_keys_env())


def imported_vault_init(project: str, values: Mapping[str, Any], secret_keys: frozenset[str]) -> Optional[str]:
    """The init output of a Vault that was initialised outside this stack (``vault operator init
    -format=json``), or ``None`` when the program initialises Vault itself. Only the shape is
    checked here; the text stays out of every message."""
    text = _secret_setting(project, values, secret_keys, "vaultInit", "init.json")
    if text is None:
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        document = {}
    keys = document.get("unseal_keys_b64")
    keys_ok = isinstance(keys, list) and bool(keys) and all(isinstance(k, str) for k in keys)
    if not keys_ok or not isinstance(document.get("root_token"), str):
        raise ConfigError(
            "invalid stack configuration:\n  vaultInit: expected the JSON that `vault operator init -format=json` "
            "prints (unseal_keys_b64 and root_token)"
        )
    return text
