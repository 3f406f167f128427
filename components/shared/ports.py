"""The platform's fixed ports, as data: what listens where besides the ports stack config sets.

No Pulumi here. Also the contracts a component offers about its listeners: ``Opening`` (for the
firewall) and ``Upstream`` (for Nginx). ``components.config`` checks every configured port against these (one validation step,
before anything is registered) and the components that bind them read their numbers from here, so the
check and the deployment cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

SSH_PORT = 22

# Nginx on the application server: the only public binds of the deployment.
NGINX_HTTP_PORT = 80
NGINX_HTTPS_PORT = 443

# Application server, published on its private IP.
REGISTRY_PORT = 5000
MINIO_API_PORT = 9000
MINIO_CONSOLE_PORT = 9090

# Every swarm member: the cluster management, gossip and overlay data ports.
SWARM_MANAGEMENT_PORT = 2377
SWARM_GOSSIP_PORT = 7946
SWARM_OVERLAY_PORT = 4789


@dataclass(frozen=True)
class FixedPort:
    """A port a component binds on a server whatever the stack config says."""

    owner: str
    port: int
    protocol: str = "tcp"


APPLICATION_FIXED = (
    FixedPort("Nginx (HTTP)", NGINX_HTTP_PORT),
    FixedPort("Nginx (HTTPS)", NGINX_HTTPS_PORT),
    FixedPort("the registry", REGISTRY_PORT),
    FixedPort("MinIO's S3 API", MINIO_API_PORT),
    FixedPort("MinIO's console", MINIO_CONSOLE_PORT),
)

SWARM_FIXED = (
    FixedPort("swarm management", SWARM_MANAGEMENT_PORT),
    FixedPort("swarm gossip", SWARM_GOSSIP_PORT),
    FixedPort("swarm gossip", SWARM_GOSSIP_PORT, "udp"),
    FixedPort("swarm overlay (VXLAN)", SWARM_OVERLAY_PORT, "udp"),
)


# --- what a component exposes to the firewall (components/platform/firewall/component.py) -----------------------------

# Who may connect, symbolically; the firewall turns these into addresses from stack config.
SWARM_MEMBERS = "swarm"  # every member of the swarm
OPERATORS = "operators"  # firewall.operators
PULUMI = "pulumi"  # the machine running Pulumi (firewall.pulumiFrom)
JUMP_HOST = "jump-host"  # access.jumpHost's connections
CONTAINERS = "containers"  # containers on the default bridge of the listening server (Nginx's)
# Otherwise a server name: that server's private IP.


@dataclass(frozen=True)
class Opening:
    """A port a component listens on, and who legitimately connects to it.

    ``published``: a container port Docker publishes (filtered in DOCKER-USER, after DNAT, by the
    original destination port); otherwise a listener on the host's network (filtered in INPUT).
    ``protocol`` ``esp`` has no port. An opening without ``clients`` is closed to every other machine.
    """

    server: str
    service: str
    port: int
    protocol: str
    published: bool
    clients: tuple[str, ...]


# --- what a component offers Nginx (components/services/edge/component.py) --------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """A service a route in ``edge.routes`` may name as its ``upstream``: declared by the component
    that runs it (its ``upstreams(config)``), gathered by ``components/assembly.py``, checked against
    the routes by ``load_deployment`` and handed to the edge by ``__main__.py``.

    Nginx proxies to ``server``'s private IP on ``port`` (``None``: the route names the port, as a
    swarm service publishes its own), adding ``directives`` to every location of the upstream. With
    ``tls_server_name`` the private hop stays TLS and Nginx verifies the certificate for that name
    against the CA the edge is handed for this upstream (``EdgeArgs.ca_certificates``).
    """

    name: str
    server: str
    port: Optional[int]
    directives: tuple[str, ...] = ()
    scheme: str = "http"
    tls_server_name: Optional[str] = None
