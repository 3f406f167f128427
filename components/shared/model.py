"""The base of every stack config section: the strict ``Model``, ``ConfigError``, the six servers' names
and the field types the sections share (addresses, ports, pinned images, paths, networks, schedules).

No Pulumi here, and nothing about any one service: the sections themselves live beside their components
(``components/<group>/<name>/settings.py``) and ``components/config.py`` composes them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Annotated, Any, Literal

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


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a network in CIDR form ({exc})") from None


UrlPath = Annotated[str, AfterValidator(_url_path)]
Network = Annotated[str, AfterValidator(_network)]
HostName = Annotated[str, AfterValidator(_domain)]

