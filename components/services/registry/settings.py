"""The Docker Registry on the application server: its port and who reaches it, the rules of the one route
that is its public name, the credentials it publishes, its memory. It has no section of its own in the
stack config. No Pulumi here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from components.shared.service import (
    CONTAINERS,
    SWARM_MEMBERS,
    BackupSource,
    Credentials,
    Declaration,
    Listener,
    Placement,
    Route,
    RouteRules,
    Service,
    Upstream,
)

if TYPE_CHECKING:
    from components.config import StackConfig

PORT = 5000
MEMORY_MIB = 512
STORAGE_PATH = "/var/lib/registry"
# What Jenkins logs in with to push, at kv/samarth/registry: its own htpasswd user.
CREDENTIALS = ("DOCKER_SERVER", "DOCKER_USERNAME", "DOCKER_PASSWORD")


def public_host(routes: Sequence[tuple[str, Route]]) -> str:
    """The registry's public name: the host of the one route to it (the route rules say there is one)."""
    (host,) = [route.host for _, route in routes if route.upstream == SERVICE.name]
    return host


def declare(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
    server = SERVICE.server
    # Image layers are large and streamed: no size limit, no buffering, long reads.
    directives = (
        "client_max_body_size 0;",
        "proxy_request_buffering off;",
        "proxy_buffering off;",
        "proxy_read_timeout 900s;",
        "proxy_send_timeout 900s;",
    )
    rules = RouteRules(
        root_path="docker clients call /v2/ at the root",
        one_route="it is the registry's public name for docker login",
    )
    return Declaration(
        # The swarm members pull; Nginx's container proxies the public name to it.
        listeners=(Listener(server, PORT, "the registry", "registry", (SWARM_MEMBERS, CONTAINERS)),),
        upstreams=(Upstream(SERVICE.name, server, PORT, directives, rules=rules),),
        backups=(BackupSource(server, "registry", "files", "registry", STORAGE_PATH),),
        credentials=(Credentials("registry", CREDENTIALS),),
        placements=(Placement(server, "registry", MEMORY_MIB),),
    )


SERVICE = Service("registry", declare, "application")
