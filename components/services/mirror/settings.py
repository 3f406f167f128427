"""The Docker Hub mirror (``mirror``): a pull-through cache on the application server that every server's
dockerd lists in ``registry-mirrors``, so the six servers pull each Docker Hub image from Docker Hub once
between them instead of once each (Docker Hub limits anonymous pulls per IPv4 address, and servers behind
one NAT share one). It covers Docker Hub only: dockerd asks mirrors for ``docker.io`` references alone.
No Pulumi here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Optional
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from components.shared.model import Model, image_repository
from components.shared.service import Declaration, Listener, Placement, Service

if TYPE_CHECKING:
    from components.config import StackConfig

DOCKER_HUB = "https://registry-1.docker.io"
# The host port on the application server's private IP; the container listens on the registry's 5000.
PORT = 5002
CONTAINER_PORT = 5000
STORAGE_PATH = "/var/lib/registry"
# What the mirror image must be: distribution's registry, which reads the proxy section it is given.
REGISTRY_REPOSITORIES = ("registry", "distribution/distribution")
HUB_TOKEN_KEY = "dockerHubToken"


def _remote_url(value: str) -> str:
    """The registry the cache pulls from: the root of an http(s) origin, nothing else (distribution
    appends ``/v2/...`` to it; credentials go in ``hubUsername`` and the secret ``dockerHubToken``)."""
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL of a registry (e.g. {DOCKER_HUB})")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{value!r} carries credentials; set mirror.hubUsername and the secret {HUB_TOKEN_KEY} instead "
            "(a URL is plain config, stored and printed as it is)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{value!r} has a path, query or fragment; the registry's root is wanted (e.g. {DOCKER_HUB})")
    return value.rstrip("/")


RemoteUrl = Annotated[str, AfterValidator(_remote_url)]


class MirrorSettings(Model):
    """The pull-through cache. ``remoteUrl`` is Docker Hub's registry unless a stand-in is wanted (the
    lab's); ``hubUsername`` with the secret ``dockerHubToken`` makes it pull as that Docker Hub account
    (its own, higher limit) instead of anonymously. ``ttl`` is how long a cached image stays unused
    before it is removed. ``enabled: false`` leaves it out, and every server's dockerd pulls from Docker
    Hub itself."""

    enabled: bool = True
    remote_url: RemoteUrl = Field(default=DOCKER_HUB, alias="remoteUrl")
    # Docker ID rules: 4 to 30 lower-case letters and digits.
    hub_username: Optional[str] = Field(default=None, alias="hubUsername", pattern=r"^[a-z0-9]{4,30}$")
    ttl: str = Field(default="168h", pattern=r"^[1-9][0-9]{0,4}h$")
    memory_mib: int = Field(default=256, alias="memoryMib", ge=128, le=4096)


def mirror_problems(config: StackConfig) -> list[str]:
    """What is wrong with ``mirror`` given the rest of the stack: its image pinned and the registry's."""
    mirror = config.mirror
    if not mirror.enabled:
        return []
    image = config.versions.mirror
    if image is None:
        return ["versions.mirror: required because mirror.enabled is true (the registry image, e.g. registry:3.1.1)"]
    if image_repository(image) not in REGISTRY_REPOSITORIES:
        return [
            f"versions.mirror: {image!r} is not distribution's registry ({', '.join(REGISTRY_REPOSITORIES)}); "
            "the mirror is that registry in proxy mode"
        ]
    return []


def mirror_url(config: StackConfig) -> Optional[str]:
    """What every server's dockerd lists in ``registry-mirrors``: the cache on the application server's
    private IP, plain HTTP on the private network (dockerd uses a mirror URL with the scheme it is given,
    so no ``insecure-registries`` entry is needed); ``None`` without a mirror."""
    if not config.mirror.enabled:
        return None
    return f"http://{config.servers[SERVICE.server].private_ip}:{PORT}"


def declare(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
    """The cache's port, reachable by the six servers' dockerd and no one else; its memory."""
    if not config.mirror.enabled:
        return Declaration()
    server = SERVICE.server
    return Declaration(
        listeners=(Listener(server, PORT, "the Docker Hub mirror", "hub mirror", tuple(config.servers)),),
        not_backed_up={"hub mirror": "a cache of Docker Hub's images, filled again by the next pulls"},
        placements=(Placement(server, "hub mirror", config.mirror.memory_mib),),
    )


SERVICE = Service("mirror", declare, "application")
