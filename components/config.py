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
    model_validator,
)

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


class StackConfig(Model):
    domain: Domain
    servers: dict[ServerName, Server]
    access: Access = Access()
    versions: Versions
    capacity: Capacity = Capacity()
    swarm: Swarm = Swarm()

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


# Read by the program as a secret Output, never through the model, so it cannot end up in a repr.
SECRET_KEYS = ("sshPrivateKey",)


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


def ssh_private_key(project: str, values: Mapping[str, Any], secret_keys: frozenset[str]) -> Optional[str]:
    """The SSH key from config, or ``None`` to use the SSH agent. A key stored in plaintext is refused."""
    key = f"{project}:sshPrivateKey"
    text = values.get(key) or ""
    if not text:
        return None
    if key not in secret_keys:
        raise ConfigError(
            "invalid stack configuration:\n  sshPrivateKey: stored in plaintext; "
            "remove it and run `pulumi config set --secret sshPrivateKey < key`"
        )
    return text


def engine_secret_keys() -> frozenset[str]:
    from pulumi.runtime import config as runtime_config

    return frozenset(runtime_config._SECRET_KEYS.get()) | frozenset(runtime_config.get_config_secret_keys_env())
