"""The swarm's settings (``swarm``) and what it declares: its members' ports (members only), the ports it
publishes for the routes to it, its manager's state as a backup. No Pulumi here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Optional

from pydantic import Field

from components.shared.model import SWARM_MANAGER, SWARM_WORKERS, AddressPool, Model, ServerName, SwarmWorker, UserKey
from components.shared.service import (
    JENKINS,
    SWARM_MEMBERS,
    BackupSource,
    Declaration,
    Listener,
    Opening,
    RouteRules,
    Service,
    Upstream,
)

if TYPE_CHECKING:
    from components.config import StackConfig

MANAGEMENT_PORT = 2377
GOSSIP_PORT = 7946
OVERLAY_PORT = 4789
# Every member: the cluster management, gossip and overlay data ports, (what binds it, port, protocol).
MEMBER_PORTS = (
    ("swarm management", MANAGEMENT_PORT, "tcp"),
    ("swarm gossip", GOSSIP_PORT, "tcp"),
    ("swarm gossip", GOSSIP_PORT, "udp"),
    ("swarm overlay (VXLAN)", OVERLAY_PORT, "udp"),
)
# Where Nginx runs: its container's requests to a published port leave from that server's private IP.
PROXY_SERVER = "application"

# Docker's default pool is 10.0.0.0/8; this /16 is outside both committed stacks' server networks
# (10.20.0.0/24, 10.30.0.0/24) and Docker's local bridge pools (172.17.0.0/16 upwards, 192.168.0.0/16).
DEFAULT_ADDRESS_POOL = "10.200.0.0/16"

# Labels the program sets on every swarm node itself (see components/services/swarm/component.py).
SWARM_AUTOMATIC_LABELS = ("role", "memory_mib")
# Label namespaces Docker keeps for itself (Docker's documentation, "Docker object labels").
DOCKER_RESERVED_LABEL_PREFIXES = ("com.docker.", "io.docker.", "org.dockerproject.")
LabelKey = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")]
LabelValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/-]{0,128}$")]


class Swarm(Model):
    """The Docker Swarm over swarm-master (manager) and its workers.

    ``workers`` lists the servers that are members: taking one out drains it, makes it leave and
    removes it from the node list. ``labels`` are extra node labels per member, for placement
    constraints (``node.labels.<key>``); ``role`` and ``memory_mib`` are set by the program.
    ``addressPool`` and ``addressPoolMaskLength``: the IPv4 network the swarm carves its overlay networks
    from, one subnet of that length each (``docker swarm init --default-addr-pool`` and
    ``--default-addr-pool-mask-length``). They apply when the swarm is initialised: an existing swarm
    keeps its pool, and the init step warns when it differs. Docker's own default, 10.0.0.0/8, would
    hold servers whose private network is in 10.0.0.0/8; this default is a /16 that neither stack uses
    (docs/swarm.md).
    ``deployKey``: the public half of Jenkins' SSH key for the ``deploy`` user on swarm-master, which may
    only run ``docker stack deploy`` of a stack file on its stdin, from ``firewall.jenkins`` only
    (docs/trust.md); unset, swarm-master has no deploy user.
    """

    workers: list[SwarmWorker] = Field(default_factory=lambda: list(SWARM_WORKERS))
    labels: dict[ServerName, dict[LabelKey, LabelValue]] = Field(default_factory=dict)
    encrypt_overlay: bool = Field(default=True, alias="encryptOverlay")
    registry_login: bool = Field(default=True, alias="registryLogin")
    address_pool: AddressPool = Field(default=DEFAULT_ADDRESS_POOL, alias="addressPool")
    address_pool_mask_length: int = Field(default=24, alias="addressPoolMaskLength", ge=8, le=29)
    deploy_key: Optional[UserKey] = Field(default=None, alias="deployKey")

    @property
    def members(self) -> tuple[str, ...]:
        return (SWARM_MANAGER, *self.workers)



def declare(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
    members = config.swarm.members
    # Management, gossip and overlay traffic (ESP when the overlay is encrypted): members only.
    listeners = [
        Listener(member, port, owner, owner, (SWARM_MEMBERS,), protocol, published=False)
        for member in members
        for owner, port, protocol in MEMBER_PORTS
    ]
    # What the swarm publishes for the routes to it, on every member (routing mesh), is for Nginx; routes
    # may share a port.
    published: set[int] = set()
    for key, route in config.edge_routes():
        if route.upstream == SERVICE.name and route.port is not None and route.port not in published:
            published.add(route.port)
            listeners += [
                Listener(member, route.port, f"{key}.port", "swarm route (Nginx upstream)", (PROXY_SERVER,), configured=True)
                for member in members
            ]
    esp = [Opening(member, "swarm overlay (IPsec)", 0, "esp", False, (SWARM_MEMBERS,)) for member in members]
    # Jenkins' deploy key logs in to the manager's sshd (docs/trust.md).
    deploy = (
        [Opening(SWARM_MANAGER, "SSH (Jenkins' deploy key)", config.servers[SWARM_MANAGER].ssh_port, "tcp", False, (JENKINS,))]
        if config.swarm.deploy_key is not None
        else []
    )
    return Declaration(
        listeners=tuple(listeners),
        openings=(*(esp if config.swarm.encrypt_overlay else ()), *deploy),
        groups={SWARM_MEMBERS: members},
        # Swarm services, reached on the manager's private IP at the port each route names.
        upstreams=(
            Upstream(
                SERVICE.name,
                SWARM_MANAGER,
                None,
                ("client_max_body_size 50m;",),
                rules=RouteRules(port_from_route="the port the swarm service publishes"),
            ),
        ),
        backups=(BackupSource(SWARM_MANAGER, "swarm", "swarm"),),
        not_backed_up={
            "swarm workers": "hold no state of their own: the manager's raft store has the services, the registry the images"
        },
    )


SERVICE = Service("swarm", declare)
