"""The base of every stack config section: the strict ``Model``, ``ConfigError``, the six servers' names
and the field types the sections share (addresses, ports, pinned images, paths, networks, schedules).

No Pulumi here, and nothing about any one service: the sections themselves live beside their components
(``components/<group>/<name>/settings.py``) and ``components/config.py`` composes them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, TypeVar, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from .systemd_time import calendar_event, time_span_usec

SERVER_NAMES: tuple[ServerName, ...] = ("application", "db1", "db2", "swarm-master", "swarm-node2", "swarm-node3")
ServerName = Literal["application", "db1", "db2", "swarm-master", "swarm-node2", "swarm-node3"]


def server_name(name: str) -> ServerName:
    """``name`` as a ``ServerName`` (a Host's resource name, say), or ``ValueError``."""
    for known in SERVER_NAMES:
        if name == known:
            return known
    raise ValueError(f"{name!r} is not a server of the deployment (expected one of {', '.join(SERVER_NAMES)})")

# RFC 1918 plus RFC 6598 (carrier-grade NAT), the ranges a cloud hands out as private addresses.
PRIVATE_NETWORKS = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)

class ConfigError(ValueError):
    """A stack configuration problem; the message names every offending key path."""


class Model(BaseModel):
    """Strict base: unknown keys (typos) are errors, types are not coerced (``true`` is not a count,
    ``"5"`` is not a number), and validated config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


def _private_ipv4(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    if not any(address in network for network in PRIVATE_NETWORKS):
        ranges = ", ".join(str(n) for n in PRIVATE_NETWORKS)
        raise ValueError(f"{value} is not a private address (expected one of {ranges})")
    return value


# ASCII only: with IGNORECASE alone, [a-z] would also match the Kelvin sign and the long s.
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.I | re.A)


def address(value: str) -> str:
    """An IP address or a DNS name."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", value) or not _HOSTNAME.fullmatch(value):
        raise ValueError(f"{value!r} is neither an IP address nor a host name")
    # No top-level domain is numeric: the C library reads 0x0a.20.0.10 or 10.20.0.0x0a as an address
    # (10.20.0.10), which no check comparing addresses would recognise.
    if re.fullmatch(r"0x[0-9a-f]*|[0-9]+", value.rsplit(".", 1)[-1], re.I | re.A):
        raise ValueError(f"{value!r} is an IP address in another notation (hexadecimal or octal parts); write it in dotted decimal")
    return value


def _domain(value: str) -> str:
    if "." not in value or not _HOSTNAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a DNS domain")
    return value.lower()


# The one rule for every pinned image tag and release reference (README, "Versions"): a full version
# (x.y or x.y.z..., optional "v", word prefix and suffix), a dated release tag (MinIO's RELEASE.2025-09-07T16-13-09Z),
# or, for git releases, a full commit id. Anything else (a major-only tag such as "16", a named channel
# such as "alpine", "mainline", "stable" or "lts") can move under the same name, so it is refused.
# A word prefix is part of some projects' release tags (PostHog's "release-1.40.0").
_FULL_VERSION = re.compile(r"([A-Za-z]+[-_])?v?[0-9]+(\.[0-9]+)+([-+_.][A-Za-z0-9][A-Za-z0-9._+-]*)?", re.ASCII)
_DATED_RELEASE = re.compile(
    r"([A-Za-z]+[.-])?[0-9]{4}-?[0-9]{2}-?[0-9]{2}([T.-][A-Za-z0-9][A-Za-z0-9._-]*)?", re.ASCII
)
_COMMIT = re.compile(r"[0-9a-f]{40}", re.ASCII)
_REPOSITORY = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*", re.ASCII)
PINNED_FORMS = "a full version (x.y or x.y.z, optional suffix), a dated release tag (RELEASE.2025-09-07T16-13-09Z)"


def pinned_tag(tag: str, commit_allowed: bool) -> bool:
    forms = (_FULL_VERSION, _DATED_RELEASE, *((_COMMIT,) if commit_allowed else ()))
    return any(form.fullmatch(tag) for form in forms)


def _image_ref(value: str) -> str:
    """``name:tag`` with a pinned tag, or ``name[:tag]@sha256:<digest>``."""
    name, _, digest = value.partition("@")
    if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest, re.ASCII):
        raise ValueError(f"{value!r} has a malformed digest (expected sha256:<64 hex>)")
    repository, tag = name, ""
    if ":" in name.rsplit("/", 1)[-1]:
        repository, tag = name.rsplit(":", 1)
    if not _REPOSITORY.fullmatch(repository):
        raise ValueError(f"{value!r} is not an image reference (lower-case repository name, then :tag)")
    if digest:
        return value
    if not tag:
        raise ValueError(f"{value!r} has no tag; pin a version such as {value}:1.2.3 or a digest")
    if not pinned_tag(tag, commit_allowed=False):
        raise ValueError(f"{value!r} uses the moving tag {tag!r}; pin {PINNED_FORMS}, or a digest (name:tag@sha256:...)")
    return value


def _release_ref(value: str) -> str:
    """A release tag or full commit id of an external git repository."""
    if not pinned_tag(value, commit_allowed=True):
        raise ValueError(f"{value!r} is not a pinned release; use {PINNED_FORMS}, or a full 40-character commit id")
    return value


# Host key types OpenSSH and pulumi-command both verify; DSA is refused by current OpenSSH.
HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")


def _host_key(value: str) -> str:
    """``<type> <base64 blob> [comment]`` as in known_hosts, the blob naming the same type."""
    return _ssh_public_key(value, "SSH public host key")


def _user_key(value: str) -> str:
    """``<type> <base64 blob> [comment]`` as in authorized_keys, without options before it."""
    return _ssh_public_key(value, "SSH public key")


def _ssh_public_key(value: str, what: str) -> str:
    parts = value.split()
    if len(parts) < 2 or parts[0] not in HOST_KEY_TYPES:
        raise ValueError(f"{value[:40]!r} is not an {what} ('<type> <base64>', type one of {', '.join(HOST_KEY_TYPES)})")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {parts[0]} key is not valid base64") from None
    length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else 0
    if blob[4 : 4 + length] != parts[0].encode():
        raise ValueError(f"the key data is not a {parts[0]} key (was it copied whole?)")
    return value


DOCKER_HUB = "docker.io"


def image_registry(ref: str) -> str:
    """The registry an image reference is pulled from, as dockerd reads it: the first path component
    when it names a host (a dot or a port in it, or ``localhost``), otherwise Docker Hub (``docker.io``)."""
    first, slash, _ = ref.partition("@")[0].partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB if first in ("docker.io", "index.docker.io") else first
    return DOCKER_HUB


def image_repository(ref: str) -> str:
    """``hashicorp/vault`` of ``hashicorp/vault:1.20.4`` (registry host kept, tag and digest dropped)."""
    name = ref.partition("@")[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


PrivateIPv4 = Annotated[str, AfterValidator(_private_ipv4)]
HostKey = Annotated[str, AfterValidator(_host_key)]
# A user's public key for an authorized_keys line (the program writes its options itself).
UserKey = Annotated[str, AfterValidator(_user_key)]
Address = Annotated[str, AfterValidator(address)]
Domain = Annotated[str, AfterValidator(_domain)]
ImageRef = Annotated[str, AfterValidator(_image_ref)]
ReleaseRef = Annotated[str, AfterValidator(_release_ref)]
Port = Annotated[int, Field(ge=1, le=65535)]

# The swarm's roles among the servers: its manager, and the servers that may join it as workers.
SWARM_MANAGER: ServerName = "swarm-master"
SwarmWorker = Literal["swarm-node2", "swarm-node3"]
SWARM_WORKERS: tuple[SwarmWorker, ...] = ("swarm-node2", "swarm-node3")


def _absolute_path(value: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9._/-]*[A-Za-z0-9._-]", value) or "/../" in f"{value}/":
        raise ValueError(f"{value!r} is not an absolute path (letters, digits and '._-/' only)")
    # One spelling per path, so that two keys naming one file or directory compare equal.
    if value != posixpath.normpath(value) or value.startswith("//"):
        raise ValueError(f"{value!r} is not in normal form (no '//', '/./' or trailing '/.'); write {posixpath.normpath(value).replace('//', '/')}")
    return value


def _email(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", value):
        raise ValueError(f"{value!r} is not an email address")
    return value


AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
Email = Annotated[str, AfterValidator(_email)]


def _seconds_as_text(value: Any) -> Any:
    """A whole number of seconds, as systemd reads it without a unit (``300``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value} is negative; a delay is zero or more seconds")
        return str(value)
    return value


def _time_span(value: str) -> str:
    time_span_usec(value)
    return value


# A systemd timer's OnCalendar= and one of its time spans (RandomizedDelaySec=), both as systemd 252
# reads them (components/shared/systemd_time.py); a span may also be a whole number of seconds.
CalendarEvent = Annotated[str, AfterValidator(calendar_event)]
TimeSpan = Annotated[str, BeforeValidator(_seconds_as_text), AfterValidator(_time_span)]


def _url_path(value: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", value):
        raise ValueError(f"{value!r} is not a URL path (starts with '/', letters, digits, '._~/-' only)")
    return value


UrlPath = Annotated[str, AfterValidator(_url_path)]
HostName = Annotated[str, AfterValidator(_domain)]


# --- network-valued keys ------------------------------------------------------------------------------
# Every key that holds a network is of a type that carries its ``NetworkRule``: the rule checks the value
# alone here (address family, breadth, special ranges), and ``network_problems`` checks it against the
# servers' own addresses and the other network keys. A new key of one of these types is checked alike.

# The named opt-in for the whole internet, where a rule allows it: "0.0.0.0/0" written as a network is
# refused, so that opening to everyone is never a typo or a copied default.
ANYWHERE = "anywhere"
WHOLE_INTERNET = "0.0.0.0/0"
# The widest public network a key may name (an office, a provider's range), per address family.
PUBLIC_NETWORK_MAX_PREFIX = {4: 24, 6: 48}
UNIQUE_LOCAL_IPV6 = ipaddress.IPv6Network("fc00::/7")
# Ranges no client connects from and no server routes as its own.
_SPECIAL_NETWORKS: tuple[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network], ...] = tuple(
    (what, ipaddress.ip_network(network))
    for what, network in (
        ("'this network' (0.0.0.0/8)", "0.0.0.0/8"),
        ("loopback", "127.0.0.0/8"),
        ("link-local", "169.254.0.0/16"),
        ("multicast", "224.0.0.0/4"),
        ("reserved", "240.0.0.0/4"),
        ("loopback", "::1/128"),
        ("link-local", "fe80::/10"),
        ("multicast", "ff00::/8"),
        ("IPv4-mapped (every IPv4 address)", "::ffff:0:0/96"),
    )
)


def _within(network: ipaddress.IPv4Network | ipaddress.IPv6Network, outer: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """``network.subnet_of(outer)`` for two networks of one family, whichever it is."""
    first, last = int(outer.network_address), int(outer.broadcast_address)
    return first <= int(network.network_address) and int(network.broadcast_address) <= last


def private_network(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Inside one of ``PRIVATE_NETWORKS`` (IPv4) or the unique-local range fc00::/7 (IPv6)."""
    if isinstance(network, ipaddress.IPv4Network):
        return any(network.subnet_of(private) for private in PRIVATE_NETWORKS)
    return network.subnet_of(UNIQUE_LOCAL_IPV6)


@dataclass(frozen=True)
class NetworkRule:
    """What a network-valued key may hold, carried by its type (``Annotated`` metadata).

    ``role``: ``source``, a network clients connect from that the host firewall admits (it may name one
    server alone, never a network holding servers' addresses); ``local``, a network the servers route as
    their own (Docker's bridge, the swarm's overlays: private, apart from the servers' addresses and from
    every source and other local network); ``filter``, a list a service matches its clients against (no
    check against the servers). ``families``: the IP versions the consumer writes rules for, and why.
    ``anywhere``: whether the ``anywhere`` opt-in is accepted; ``wide_hint``: what to do instead of a
    network wider than ``PUBLIC_NETWORK_MAX_PREFIX``. ``noun``: the key's kind in messages.
    """

    noun: str
    role: Literal["source", "local", "filter"]
    families: tuple[int, ...]
    family_reason: str
    wide_hint: str
    anywhere: bool = False

    def check(self, value: str) -> str:
        """The value alone: ``anywhere`` (as ``0.0.0.0/0``) where allowed, else a network in CIDR form of an
        allowed family, not a special range, private (``local``), or public no wider than the limit."""
        if value == ANYWHERE:
            if not self.anywhere:
                raise ValueError(f"{ANYWHERE!r} (the whole internet) is not accepted for {self.noun}; {self.wide_hint}")
            return WHOLE_INTERNET
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network in CIDR form ({exc})") from None
        if network.version not in self.families:
            raise ValueError(f"{network} is an IPv{network.version} network; {self.family_reason}")
        if network.prefixlen == 0:
            instead = f"write {ANYWHERE!r} to mean it" if self.anywhere else self.wide_hint
            raise ValueError(f"{network} is the whole internet, which needs an explicit opt-in; {instead}")
        for what, special in _SPECIAL_NETWORKS:
            if network.version == special.version and _within(network, special):
                raise ValueError(f"{network} is a {what} network: no client connects from it and no server routes it")
        private = private_network(network)
        if self.role == "local" and not private:
            ranges = ", ".join(str(n) for n in PRIVATE_NETWORKS)
            raise ValueError(f"{network} is not a private network (expected inside one of {ranges})")
        widest = PUBLIC_NETWORK_MAX_PREFIX[network.version]
        if not private and network.prefixlen < widest:
            anywhere = f", or {ANYWHERE!r} for the whole internet" if self.anywhere else ""
            raise ValueError(
                f"{network} is a public network wider than /{widest}, open to a large part of the internet; "
                f"name private networks or public ones of at most /{widest}{anywhere} ({self.wide_hint})"
            )
        return str(network)


FIREWALL_SOURCE = NetworkRule(
    "a firewall source",
    "source",
    (4,),
    "the host firewall writes IPv4 (iptables) rules only, so an IPv6 source would admit nobody",
    f"list the networks clients connect from, or write {ANYWHERE!r} to open to the whole internet",
    anywhere=True,
)
DOCKER_BRIDGE = NetworkRule(
    "a bridge network",
    "local",
    (4,),
    "Docker's default bridge and the host firewall's rules for its containers are IPv4",
    "Docker's bridge is a private network of the server's own",
)
ADDRESS_POOL = NetworkRule(
    "a pool",
    "local",
    (4,),
    "the swarm's address pool is IPv4",
    "the swarm's overlay networks are private",
)
ROUTE_ALLOW = NetworkRule(
    "a route's allow",
    "filter",
    (4, 6),
    "",
    "leave allow out to serve a route to everyone (a route to an admin UI must name its networks)",
)
TOKEN_BOUND_CIDRS = NetworkRule(
    "a token's bound networks",
    "filter",
    (4, 6),
    "",
    "leave the list empty to bind the token to no address",
)

# Network: a network the host firewall admits clients from (every firewall source list is of this type).
Network = Annotated[str, AfterValidator(FIREWALL_SOURCE.check), FIREWALL_SOURCE]
BridgeNetwork = Annotated[str, AfterValidator(DOCKER_BRIDGE.check), DOCKER_BRIDGE]
AddressPool = Annotated[str, AfterValidator(ADDRESS_POOL.check), ADDRESS_POOL]
AllowedNetwork = Annotated[str, AfterValidator(ROUTE_ALLOW.check), ROUTE_ALLOW]
BoundNetwork = Annotated[str, AfterValidator(TOKEN_BOUND_CIDRS.check), TOKEN_BOUND_CIDRS]


def _this_machine(host: str) -> bool:
    """``host`` is loopback or the unspecified address: each machine's own, nobody else's way to it."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.lower() == "localhost" or host.lower().endswith(".localhost")
    return ip.is_loopback or ip.is_unspecified


# --- URL-valued keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UrlRule:
    """The shape of URL its consumer reads, carried by a URL-valued key's type: ``schemes``, a host (a name
    or an IP address), a port in range (``port``: required), a path only where ``path``, and never
    credentials, a query or a fragment (the consumers take none)."""

    consumer: str
    schemes: tuple[str, ...]
    path: bool
    port: bool = False

    def check(self, value: str) -> str:
        port_shape = ":<port>" if self.port else "[:port]"
        shape = f"{self.consumer} reads {'|'.join(self.schemes)}://<host>{port_shape}{'[/path]' if self.path else ''}"
        parts = urlsplit(value)
        if parts.scheme not in self.schemes or not value.startswith(f"{parts.scheme}://"):
            raise ValueError(f"{value!r} is not an {' or '.join(self.schemes)} URL; {shape}")
        if "@" in parts.netloc:
            raise ValueError(f"{value!r} holds credentials before '@'; {shape}, with no user or password in it")
        if "?" in value or "#" in value:
            raise ValueError(f"{value!r} has a query or a fragment; {shape}")
        if not parts.hostname:
            raise ValueError(f"{value!r} has no host; {shape}")
        address(parts.hostname)
        if _this_machine(parts.hostname):
            raise ValueError(f"{value!r} names the machine itself (loopback or unspecified); {shape}, at an address other machines reach")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{value!r} has a port out of range (1 to 65535)") from None
        if port == 0 or (port is None and parts.netloc.endswith(":")):
            raise ValueError(f"{value!r} has a port out of range (1 to 65535)")
        if self.port and port is None:
            raise ValueError(f"{value!r} has no port; {shape}")
        if parts.path and not self.path:
            raise ValueError(f"{value!r} has a path ({parts.path}); {shape}")
        segments = parts.path.split("/")[1:]
        if parts.path and (not re.fullmatch(r"(/[A-Za-z0-9._~-]+)*/?", parts.path, re.A) or {".", ".."} & set(segments)):
            raise ValueError(f"{value!r}: the path {parts.path!r} is not a plain path (letters, digits, '._~-' between slashes)")
        return value


VAULT_API_ADDR = UrlRule("Vault's api_addr (the address it sends clients to)", ("http", "https"), path=False)
VAULT_CLUSTER_ADDR = UrlRule("Vault's cluster_addr (the address other nodes forward to)", ("https",), path=False, port=True)
ACME_DIRECTORY = UrlRule("the ACME client (lego --server)", ("https",), path=True)

VaultApiAddr = Annotated[str, AfterValidator(VAULT_API_ADDR.check), VAULT_API_ADDR]
VaultClusterAddr = Annotated[str, AfterValidator(VAULT_CLUSTER_ADDR.check), VAULT_CLUSTER_ADDR]
AcmeDirectoryUrl = Annotated[str, AfterValidator(ACME_DIRECTORY.check), ACME_DIRECTORY]


# --- finding the keys of a kind -----------------------------------------------------------------------

Rule = TypeVar("Rule", NetworkRule, UrlRule)


def _rule_of(annotation: Any, kind: type[Rule], metadata: Iterable[Any] = ()) -> Optional[Rule]:
    for item in metadata:
        if isinstance(item, kind):
            return item
    if get_origin(annotation) is Annotated:
        found = _rule_of(None, kind, annotation.__metadata__)
        if found is not None:
            return found
    for argument in get_args(annotation):
        found = _rule_of(argument, kind)
        if found is not None:
            return found
    return None


def network_values(model: BaseModel, path: str = "") -> Iterator[tuple[str, str, NetworkRule]]:
    """Every network-valued key of ``model`` (its value's type carries a ``NetworkRule``), at any depth:
    the key path in the stack file's spelling, the value, its rule."""
    for name, field in type(model).model_fields.items():
        key = f"{path}.{field.alias or name}" if path else (field.alias or name)
        yield from _network_items(getattr(model, name), key, _rule_of(field.annotation, NetworkRule, field.metadata))


def _network_items(value: Any, key: str, rule: Optional[NetworkRule]) -> Iterator[tuple[str, str, NetworkRule]]:
    if isinstance(value, BaseModel):
        yield from network_values(value, key)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _network_items(item, f"{key}[{index}]", rule)
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _network_items(item, f"{key}.{name}", rule)
    elif isinstance(value, str) and rule is not None:
        yield key, value, rule


def rule_keys(model: type[BaseModel], kind: type[Rule], path: str = "") -> Iterator[tuple[str, Rule]]:
    """Every field of ``model``'s schema whose type carries a rule of ``kind`` (``NetworkRule``,
    ``UrlRule``), at any depth, whether the stack sets it or not: its key path (``[0]`` for a list's
    items, ``.<key>`` for a map's values) and its rule."""
    for name, field in model.model_fields.items():
        key = f"{path}.{field.alias or name}" if path else (field.alias or name)
        rule = _rule_of(field.annotation, kind, field.metadata)
        if rule is not None:
            yield (f"{key}[0]" if _is_sequence(field.annotation) else key), rule
            continue
        yield from _nested_keys(field.annotation, kind, key)


def _is_sequence(annotation: Any) -> bool:
    if get_origin(annotation) in (list, tuple):
        return True
    return get_origin(annotation) is not Annotated and any(_is_sequence(argument) for argument in get_args(annotation))


def _nested_keys(annotation: Any, kind: type[Rule], key: str) -> Iterator[tuple[str, Rule]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from rule_keys(annotation, kind, key)
        return
    origin = get_origin(annotation)
    arguments = get_args(annotation)
    if origin in (list, tuple):
        for argument in arguments[:1]:
            yield from _nested_keys(argument, kind, f"{key}[0]")
    elif origin is dict:
        yield from _nested_keys(arguments[1], kind, f"{key}.<key>")
    else:
        for argument in arguments:
            yield from _nested_keys(argument, kind, key)

