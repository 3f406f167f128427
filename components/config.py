"""The stack's configuration: every section's model composed into ``StackConfig``, the checks that span
sections, and the loaders.

Pulumi hands the program one JSON document per top-level key (``samarth-infra:servers`` and so on).
``load_stack_config`` turns them into typed, frozen models and raises ``ConfigError`` naming the key
path and what is wrong, so a bad stack file stops ``pulumi preview`` before anything is planned. Each
section's model, and the rules about that section alone, live beside its component
(``components/<group>/<name>/settings.py``). ``check_declarations`` checks what the services declare from
the config against each other (``load_deployment`` calls it). No Pulumi here.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from components.platform.firewall.settings import FirewallSettings
from components.platform.host.settings import HOST_KEYS_COMMAND, Access, Logs, Server
from components.services.backups.settings import Backups, OffsiteRepository
from components.services.backups.settings import key_problems as backup_key_problems
from components.services.databases.catalogue import image_major
from components.services.databases.settings import Databases
from components.services.edge.settings import Edge, route_problems
from components.services.edge.settings import acme_hosts as edge_acme_hosts
from components.services.mirror.settings import HUB_TOKEN_KEY, MirrorSettings, mirror_problems
from components.services.observability.settings import ObservabilitySettings, PostHogImages
from components.services.observability.settings import routes as observability_routes
from components.services.swarm.settings import DOCKER_RESERVED_LABEL_PREFIXES, SWARM_AUTOMATIC_LABELS, Swarm
from components.services.vault.settings import VaultSettings
from components.services.vault.settings import server_name as vault_server_name
from components.shared.model import (
    SERVER_NAMES,
    WHOLE_INTERNET,
    ConfigError,
    Domain,
    ImageRef,
    Model,
    ReleaseRef,
    ServerName,
    image_repository,
    network_values,
)
from components.shared.service import Credentials, Declaration, Route


class Versions(Model):
    """Every image and external release the program deploys, pinned. Promotion copies this map.

    ``name:tag``, ``name@sha256:<digest>`` or both (``name:tag@sha256:<digest>``: the tag says which
    release, the digest which build; official tags are rebuilt in place). Engines no catalogue
    service uses may be left out; one that is used must be pinned (checked in ``StackConfig``).
    """

    postgres: ImageRef
    redis: ImageRef
    rabbitmq: ImageRef
    # FusionAuth's search engine (OpenSearch 2.x); Elasticsearch only for a service that asks for it.
    opensearch: Optional[ImageRef] = None
    elasticsearch: Optional[ImageRef] = None
    # HashiCorp Vault or a compatible build (OpenBao); ``vault.distribution`` says which.
    vault: ImageRef
    # getsentry/self-hosted release tag, and the posthog-deploy commit (it has no release tags).
    sentry: ReleaseRef
    posthog: ReleaseRef
    posthog_images: PostHogImages = Field(alias="posthogImages")
    # MinIO's community image is frozen (docs/upstreams.md): point this at a maintained compatible build if needed.
    minio: ImageRef
    registry: ImageRef
    # The Docker Hub mirror: distribution's registry in proxy mode (``mirror``); required while it is enabled.
    mirror: Optional[ImageRef] = None
    nginx: ImageRef
    # The ACME client (goacme/lego) that obtains and renews Nginx's certificates (edge.tls.mode acme).
    lego: ImageRef
    # restic's official image: the backup agents copy its static binary onto each server.
    restic: ImageRef
    # rclone's official image: with backups.offsite, restic reaches the off-site repository through it.
    rclone: Optional[ImageRef] = None

    @field_validator("postgres")
    @classmethod
    def _postgres_has_a_version_tag(cls, value: str) -> str:
        # The data path and the major-version check on the server both follow the tag's major version.
        if image_major(value) is None:
            raise ValueError(
                f"{value!r} has no version tag; write postgres:<version> or postgres:<version>@sha256:<digest> "
                "(the data path and the upgrade check follow the major version)"
            )
        return value


class Capacity(Model):
    headroom_percent: int = Field(default=10, alias="headroomPercent", ge=0, le=90)


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
    firewall: FirewallSettings
    logs: Logs = Logs()
    mirror: MirrorSettings = MirrorSettings()

    @model_validator(mode="after")
    def _servers_are_the_six(self) -> StackConfig:
        missing = [name for name in SERVER_NAMES if name not in self.servers]
        if missing:
            raise ValueError(f"servers: missing {', '.join(missing)} (expected exactly {', '.join(SERVER_NAMES)})")
        problems = address_problems(self.servers)
        if problems:
            raise ValueError("\n  ".join(problems))
        if self.access.via == "public":
            for name, server in self.servers.items():
                if server.public_address is None:
                    raise ValueError(f"servers.{name}.publicAddress: required because access.via is 'public'")
        return self

    @model_validator(mode="after")
    def _one_key_per_ssh_endpoint(self) -> StackConfig:
        # known_hosts accepts any key listed for an address: two different keys pinned for one
        # address and port (a jump host that is also a server) would let either pass for both.
        pinned: dict[tuple[str, int], tuple[str, str]] = {}
        endpoints = []
        for name, server in self.servers.items():
            address = server.public_address if self.access.via == "public" else server.private_ip
            if address is not None and server.host_key is not None:
                endpoints.append((f"servers.{name}.hostKey", address, server.ssh_port, server.host_key))
        jump = self.access.jump_host
        if jump is not None and jump.host_key is not None:
            endpoints.append(("access.jumpHost.hostKey", jump.host, jump.port, jump.host_key))
        for path, address, port, key in endpoints:
            blob = key.split()[1]
            other_path, other_blob = pinned.setdefault((address, port), (path, blob))
            if other_blob != blob:
                raise ValueError(
                    f"{path}: {address}:{port} is also where {other_path.rsplit('.', 1)[0]} is reached, "
                    f"pinned with another key; one machine has one host key"
                )
        return self

    @model_validator(mode="after")
    def _swarm_labels_name_members(self) -> StackConfig:
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
                reserved = next((prefix for prefix in DOCKER_RESERVED_LABEL_PREFIXES if key.startswith(prefix)), None)
                if reserved is not None:
                    raise ValueError(f"swarm.labels.{name}.{key}: {reserved}* labels are reserved for Docker's own use, choose another key")
        return self

    @model_validator(mode="after")
    def _networks_are_apart(self) -> StackConfig:
        # Every network-valued key, by its type's rule (components/shared/model.py: NetworkRule).
        problems = network_problems(self)
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    @model_validator(mode="after")
    def _swarm_pool_fits_its_subnets(self) -> StackConfig:
        swarm = self.swarm
        pool = ipaddress.ip_network(swarm.address_pool)
        if swarm.address_pool_mask_length < pool.prefixlen:
            raise ValueError(
                f"swarm.addressPoolMaskLength: {swarm.address_pool_mask_length} is wider than the pool {pool}; "
                f"use {pool.prefixlen} to 29"
            )
        return self


    @model_validator(mode="after")
    def _deploy_key_has_its_networks(self) -> StackConfig:
        # The key's from= option is firewall.jenkins: without it the key would be usable from anywhere
        # that reaches swarm-master's sshd.
        if self.swarm.deploy_key is not None and not self.firewall.jenkins:
            raise ValueError(
                "swarm.deployKey: set firewall.jenkins to the networks Jenkins connects from; the deploy key is "
                "accepted from those only (its from= option), and the firewall opens swarm-master's SSH to them"
            )
        return self

    @model_validator(mode="after")
    def _databases_are_consistent(self) -> StackConfig:
        problems = self.databases.problems()
        if problems:
            raise ValueError("\n  ".join(problems))
        users: dict[str, list[str]] = {}
        for container in self.databases.containers():
            users.setdefault(container.engine, []).append(container.service)
        for engine, services in users.items():
            if getattr(self.versions, engine) is None:
                raise ValueError(f"versions.{engine}: required, {engine} is used by {', '.join(services)}; pin an image")
        return self

    @model_validator(mode="after")
    def _vault_image_is_its_distribution(self) -> StackConfig:
        repository = image_repository(self.versions.vault).rsplit("/", 1)[-1]
        distribution = self.vault.distribution
        if repository != distribution and not repository.startswith(f"{distribution}-"):
            raise ValueError(
                f"vault.distribution: {distribution!r} does not match versions.vault {self.versions.vault!r} "
                f"(an image named {distribution!r} is expected; set distribution to the build the image is)"
            )
        return self

    @model_validator(mode="after")
    def _mirror_runs_the_registry(self) -> StackConfig:
        problems = mirror_problems(self)
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    @model_validator(mode="after")
    def _offsite_has_rclone(self) -> StackConfig:
        if self.backups.enabled and self.backups.offsite is not None and self.versions.rclone is None:
            raise ValueError("versions.rclone: required with backups.offsite (the agents reach the off-site repository through rclone), e.g. rclone/rclone:1.75.0")
        return self

    @model_validator(mode="after")
    def _offsite_is_off_the_site(self) -> StackConfig:
        # A copy on one of the six servers would be lost with the site, and would take disk the capacity
        # check does not plan for.
        offsite: Optional[OffsiteRepository] = self.backups.offsite if self.backups.enabled else None
        if offsite is not None:
            where = self.on_site(offsite.host)
            if where is not None:
                raise ValueError(
                    f"backups.offsite.repository: {offsite.host} is {where}; an off-site repository must be "
                    "outside the six servers (another site, a cloud S3 endpoint)"
                )
        return self

    def on_site(self, host: str) -> Optional[str]:
        """How ``host`` (an address or a name) reaches one of the six servers, or ``None``: a server's
        address, the machine itself (loopback: each agent runs on a server), a server's name, or a name
        this stack serves (Nginx's routes, Vault's certificate name: they point at the application server)."""
        wanted = same_address(host)
        for name, server in self.servers.items():
            if any(same_address(value) == wanted for _, _, value in own_addresses(server)):
                return f"servers.{name}"
        address = ip_or_none(host)
        if (address is not None and (address.is_loopback or address.is_unspecified)) or wanted == "localhost" or wanted.endswith(".localhost"):
            return "the server the agent runs on (a loopback or unspecified address)"
        first, _, rest = wanted.partition(".")
        if first in SERVER_NAMES and rest in ("", self.domain):
            return f"the name of servers.{first}"
        served = {route.host: key for key, route in self.edge_routes()}
        served.setdefault(self.vault_server_name, "vault.serverName")
        if wanted in served:
            return f"a name this stack's Nginx or Vault serves on the application server ({served[wanted]})"
        return None

    @model_validator(mode="after")
    def _jump_host_address_is_known(self) -> StackConfig:
        # Without jumpHostFrom the jump host's own address becomes a firewall source: an IPv4 address.
        jump = self.access.jump_host
        if jump is None or self.firewall.jump_host_from:
            return self
        if any(jump.host in (s.private_ip, s.public_address) for s in self.servers.values()):
            return self
        if ip_or_none(jump.host) is None:
            raise ValueError(
                f"firewall.jumpHostFrom: required because access.jumpHost.host {jump.host!r} is a name "
                "(the firewall allows SSH from addresses)"
            )
        # As written: the firewall's source is made from this text (an IPv4-mapped address too is IPv6 there).
        if ":" in jump.host:
            raise ValueError(
                f"firewall.jumpHostFrom: required because access.jumpHost.host {jump.host} is an IPv6 address and the "
                "host firewall writes IPv4 (iptables) rules only; set the IPv4 network its connections come from"
            )
        return self

    @property
    def vault_server_name(self) -> str:
        """The name Vault's certificate is issued for and every client verifies."""
        return vault_server_name(self.vault, self.domain)

    def edge_routes(self) -> list[tuple[str, Route]]:
        """Every route Nginx serves, with the config key it comes from: ``edge.routes``, then those the
        sections add (Sentry's and PostHog's at their ``hostName``)."""
        routes = [(f"edge.routes[{index}]", route) for index, route in enumerate(self.edge.routes)]
        return routes + observability_routes(self.observability)

    @model_validator(mode="after")
    def _edge_routes_are_distinct_and_in_domain(self) -> StackConfig:
        seen: dict[tuple[str, str], str] = {}
        for key, route in self.edge_routes():
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

    def acme_hosts(self) -> list[str]:
        """The names the program gets certificates for over ACME."""
        return edge_acme_hosts(self.edge.tls, self.edge_routes())

    @model_validator(mode="after")
    def _tls_mode_has_its_keys(self) -> StackConfig:
        # Here rather than on EdgeTls so the messages carry the full key path.
        tls = self.edge.tls
        if tls.mode == "files":
            for key, value in (("certificatePath", tls.certificate_path), ("keyPath", tls.key_path)):
                if value is None:
                    raise ValueError(f"edge.tls.{key}: required because mode is 'files'")
            if tls.acme is not None or tls.files:
                extra = "acme" if tls.acme is not None else "files"
                raise ValueError(f"edge.tls.{extra}: only for mode 'acme' (mode 'files' serves every name from certificatePath/keyPath)")
            return self
        if tls.acme is None:
            raise ValueError("edge.tls.acme: required because mode is 'acme' (at least acme.email)")
        for key, value in (("certificatePath", tls.certificate_path), ("keyPath", tls.key_path)):
            if value is not None:
                raise ValueError(
                    f"edge.tls.{key}: only for mode 'files'; in mode 'acme' a name served from the operator's "
                    "files goes under edge.tls.files.<host name>"
                )
        return self

    @model_validator(mode="after")
    def _certificate_files_name_routed_hosts(self) -> StackConfig:
        routed = {route.host for _, route in self.edge_routes()}
        for host in self.edge.tls.files:
            key = f"edge.tls.files.{host}"
            if host != self.domain and not host.endswith("." + self.domain):
                raise ValueError(f"{key}: {host!r} is not under domain {self.domain!r}")
            if host not in routed:
                raise ValueError(
                    f"{key}: {host!r} is not routed through Nginx (no edge.routes entry or enabled observability hostName), "
                    "so no certificate for it would be served"
                )
        return self



IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def own_addresses(server: Server) -> list[tuple[str, str, str]]:
    """A server's addresses as (key, what it is, value): its private IP, and its public address if set."""
    addresses = [("privateIp", "private IP", server.private_ip)]
    if server.public_address is not None:
        addresses.append(("publicAddress", "public address", server.public_address))
    return addresses


def same_address(value: str) -> str:
    """``value`` in one spelling per machine: an IP address in its compressed form (an IPv4-mapped IPv6
    address as its IPv4 one), a name in lower case."""
    address = ip_or_none(value)
    return str(address) if address is not None else value.lower()


def address_problems(servers: Mapping[ServerName, Server]) -> list[str]:
    """Every address two servers would share: one server's private IP as another's private IP or public
    address, or one public address with one SSH port (a NAT forwarding one address to several servers
    gives each its own port)."""
    seen: dict[str, tuple[str, str, int]] = {}
    problems: list[str] = []
    for name, server in servers.items():
        for key, what, value in own_addresses(server):
            other, other_what, other_port = seen.setdefault(same_address(value), (name, what, server.ssh_port))
            if other == name:
                continue
            if what == other_what == "public address" and other_port != server.ssh_port:
                continue
            problems.append(f"servers.{name}.{key}: {value} is already the {other_what} of {other}; one address is one machine")
    return problems


def server_addresses(config: StackConfig) -> list[tuple[str, IPAddress]]:
    """Every server's own IP addresses, with their keys: private IPs, and public addresses given as IPs."""
    return [
        (f"servers.{name}.{key}", address)
        for name, server in config.servers.items()
        for key, _, value in own_addresses(server)
        if (address := ip_or_none(value)) is not None
    ]


def ip_or_none(value: Optional[str]) -> Optional[IPAddress]:
    """``value`` as an IP address (an IPv4-mapped IPv6 address as its IPv4 one), or ``None`` for a name."""
    try:
        address = ipaddress.ip_address(value or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def network_problems(config: StackConfig) -> list[str]:
    """Every network-valued key (``network_values``: each value's own rule already held) against the
    servers' own addresses and the other network keys: a source holds no server's address but may be one
    server alone; a local network (Docker's bridge, the swarm's pool) holds none and overlaps no source
    and no other local network. The whole internet, named with ``anywhere``, is the opt-in and not compared."""
    found = [
        (key, ipaddress.ip_network(value), rule) for key, value, rule in network_values(config) if value != WHOLE_INTERNET
    ]
    addresses = server_addresses(config)
    problems: list[str] = []
    for key, network, rule in found:
        if rule.role == "filter":
            continue
        held = [(where, address) for where, address in addresses if address.version == network.version and address in network]
        if not held or (rule.role == "source" and len(held) == 1 and network.num_addresses == 1):
            continue
        where, address = held[0]
        if rule.role == "source":
            instead = (
                f"the firewall already admits each server by what it declares: name one server alone "
                f"({address}/{address.max_prefixlen}) or a network apart from the servers'"
            )
        else:
            instead = f"choose {rule.noun} apart from the servers' network"
        problems.append(f"{key}: {network} holds {where} {address}; {instead}")
    for index, (key, network, rule) in enumerate(found):
        for other_key, other, other_rule in found[index + 1 :]:
            roles = {rule.role, other_rule.role}
            if "local" in roles and "filter" not in roles and network.version == other.version and network.overlaps(other):
                # The source is blamed rather than the servers' own network; of two local ones, the first.
                if rule.role == "local" and other_rule.role == "source":
                    key, network, other_key, other = other_key, other, key, network
                problems.append(
                    f"{key}: {network} overlaps {other_key} {other}; a network the servers route as their own (Docker's "
                    "bridge, the swarm's pool) must be apart from every firewall source and from each other, or "
                    "traffic from the one would be taken for the other"
                )
    return problems


def missing_host_keys(config: StackConfig) -> list[str]:
    """Key paths of the host keys the stack does not pin (servers, then the jump host)."""
    missing = [f"servers.{name}.hostKey" for name, server in config.servers.items() if server.host_key is None]
    jump = config.access.jump_host
    if jump is not None and jump.host_key is None:
        missing.append("access.jumpHost.hostKey")
    return missing


def require_host_keys(config: StackConfig, stack: str) -> None:
    """Refuse a stack that does not pin every SSH host key: without them any machine answering on a
    server's address would receive the Vault unseal keys and every other secret."""
    missing = missing_host_keys(config)
    if missing:
        raise ConfigError(
            "invalid stack configuration:\n  "
            + "\n  ".join(f"{path}: required (the server's SSH host key, pinned)" for path in missing)
            + f"\n  scan the servers, compare the fingerprints and write the keys with: {HOST_KEYS_COMMAND.format(stack=stack)}"
        )


def check_declarations(config: StackConfig, declarations: Mapping[str, Declaration]) -> None:
    """Raise ``ConfigError`` naming every conflict between what the services (by name) declare from
    ``config``: a route to no offered upstream or against its rules, a port bound twice on a server, a
    Vault key published twice, a backup schedule or size naming no backup target."""
    problems = [
        *route_problems(
            config.edge_routes(),
            [upstream for declaration in declarations.values() for upstream in declaration.upstreams],
            {name: why for declaration in declarations.values() for name, why in declaration.absent.items()},
        ),
        *listener_problems(declarations.values()),
        *credential_problems(declarations),
        *backup_key_problems(config.backups, [source for declaration in declarations.values() for source in declaration.backups]),
    ]
    if problems:
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(problems))


def listener_problems(declarations: Iterable[Declaration]) -> list[str]:
    """Every port bound twice on one server. The fixed ports come first, so a configured port is the one
    named as clashing."""
    listeners = [listener for declaration in declarations for listener in declaration.listeners]
    taken: dict[tuple[str, int, str], str] = {}
    problems: list[str] = []
    for listener in sorted(listeners, key=lambda listener: listener.configured):
        other = taken.setdefault((listener.server, listener.port, listener.protocol), listener.owner)
        if other != listener.owner:
            what = f"SSH ({other})" if other.endswith(".sshPort") else other
            problems.append(f"{listener.owner}: port {listener.port}/{listener.protocol} on {listener.server} is already used by {what}")
    return problems


def credential_problems(declarations: Mapping[str, Declaration]) -> list[str]:
    """Every Vault key two services would publish at one path: found here, not when Vault writes the path
    after every server is done. The one whose config names the key is told to rename it."""
    publishers: dict[tuple[str, str], list[tuple[str, Credentials]]] = {}
    for service, declaration in declarations.items():
        for credentials in declaration.credentials:
            for key in credentials.keys:
                publishers.setdefault((credentials.kv_path, key), []).append((service, credentials))
    problems: list[str] = []
    for (path, key), found in publishers.items():
        if len(found) < 2:
            continue
        blamed = next((credentials for _, credentials in found if credentials.key is not None), found[-1][1])
        service, other = next((service, credentials) for service, credentials in found if credentials is not blamed)
        where = f"{blamed.key}.{key}" if blamed.key else f"kv/{path}.{key}"
        problems.append(
            f"{where}: kv/{path} already gets {key} from {service} ({', '.join(other.keys)}); rename the service or the variable"
        )
    return problems


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


def text_problems(value: Any, path: str = "") -> list[str]:
    """Every text in ``value`` (keys and values, at any depth) that would be read as something other
    than it looks: control characters (a newline), leading or trailing whitespace, non-ASCII
    characters (a Cyrillic "а" in a host name). Config is names, addresses, paths and versions."""
    problems: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            problems += [f"{here} (the key){p}" for p in _text_problem(key)]
            problems += text_problems(item, here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems += text_problems(item, f"{path}[{index}]")
    else:
        problems += [f"{path}{p}" for p in _text_problem(value)]
    return problems


def _text_problem(value: Any) -> list[str]:
    if not isinstance(value, str):
        return []
    control = sorted({c for c in value if ord(c) < 32 or ord(c) == 127})
    if control:
        return [f": {value!r} contains the control character(s) {', '.join(repr(c) for c in control)}"]
    if value != value.strip():
        return [f": {value!r} has leading or trailing whitespace"]
    foreign = sorted({c for c in value if not c.isascii()})
    if foreign:
        return [f": {value!r} contains non-ASCII character(s) {', '.join(f'{c!r} (U+{ord(c):04X})' for c in foreign)}"]
    return []


def validate(raw: Mapping[str, Any]) -> StackConfig:
    """Validate plain data (what the stack file holds) into a ``StackConfig`` or raise ``ConfigError``."""
    lines = set(text_problems(raw))
    try:
        config = StackConfig.model_validate(raw)
    except ValidationError as exc:
        lines |= {_describe(e) for e in exc.errors()}
    if lines:
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(sorted(lines)))
    return config


def validate_versions(raw: Any) -> Versions:
    """The ``versions`` map alone (what promotion copies), with the same key-path messages."""
    try:
        return Versions.model_validate(raw)
    except ValidationError as exc:
        lines = sorted({_describe({**e, "loc": ("versions", *e["loc"])}) for e in exc.errors()})
        raise ConfigError("invalid versions:\n  " + "\n  ".join(lines)) from None


# Read by the program as a secret Output, never through the model, so it cannot end up in a repr.
SECRET_KEYS = ("sshPrivateKey", "vaultInit", "backupsOffsiteSecretAccessKey", HUB_TOKEN_KEY)


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


def offsite_secret_access_key(
    project: str, values: Mapping[str, Any], secret_keys: frozenset[str], config: StackConfig
) -> Optional[str]:
    """The off-site S3 repository's secret key (``backupsOffsiteSecretAccessKey``): required with an S3
    ``backups.offsite``, refused without one (a key nothing uses is a leftover or a typo)."""
    key = _secret_setting(project, values, secret_keys, "backupsOffsiteSecretAccessKey", "secret-access-key")
    offsite = config.backups.offsite if config.backups.enabled else None
    if offsite is not None and offsite.kind == "s3" and key is None:
        raise ConfigError(
            "invalid stack configuration:\n  backupsOffsiteSecretAccessKey: required for the S3 repository in "
            "backups.offsite; run `pulumi config set --secret backupsOffsiteSecretAccessKey < secret-access-key`"
        )
    if key is not None and (offsite is None or offsite.kind != "s3"):
        raise ConfigError(
            "invalid stack configuration:\n  backupsOffsiteSecretAccessKey: set, but backups.offsite is not an "
            "enabled S3 repository; remove it with `pulumi config rm backupsOffsiteSecretAccessKey`"
        )
    return key


def docker_hub_token(project: str, values: Mapping[str, Any], secret_keys: frozenset[str], config: StackConfig) -> Optional[str]:
    """The Docker Hub access token the mirror pulls with (``dockerHubToken``), with ``mirror.hubUsername``:
    one without the other is refused (half an account pulls anonymously, silently)."""
    token = _secret_setting(project, values, secret_keys, HUB_TOKEN_KEY, "docker-hub-token")
    username = config.mirror.hub_username if config.mirror.enabled else None
    if username is not None and token is None:
        raise ConfigError(
            f"invalid stack configuration:\n  {HUB_TOKEN_KEY}: required with mirror.hubUsername ({username}); "
            f"run `pulumi config set --secret {HUB_TOKEN_KEY} < docker-hub-token`, or remove mirror.hubUsername to pull anonymously"
        )
    if token is not None and username is None:
        raise ConfigError(
            f"invalid stack configuration:\n  {HUB_TOKEN_KEY}: set, but mirror.hubUsername is not (or the mirror is disabled); "
            f"set the account's name in mirror.hubUsername, or remove the token with `pulumi config rm {HUB_TOKEN_KEY}`"
        )
    return token
