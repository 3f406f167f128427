"""The one shape every service declares from config alone: where it runs, what it listens on and who may
reach it, what Nginx may route to, what it backs up, what it publishes to Vault, what it places on the
servers and which images its scripts pull.

No Pulumi here. Each service's ``settings.py`` offers ``SERVICE``; ``components/assembly.py`` lists them
and gathers their ``Declaration``s, ``load_deployment`` checks them against each other (ports, routes,
Vault keys, capacity), and the firewall, the edge and the backups are handed what was declared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from pydantic import Field

from .model import AllowedNetwork, HostName, Model, Port, ServerName, UrlPath

if TYPE_CHECKING:
    from components.config import StackConfig

# Who may connect, symbolically; the firewall turns these into addresses from stack config.
OPERATORS = "operators"  # firewall.operators
PULUMI = "pulumi"  # the machine running Pulumi (firewall.pulumiFrom)
JUMP_HOST = "jump-host"  # access.jumpHost's connections
CONTAINERS = "containers"  # containers on the default bridge of the listening server (Nginx's)
SWARM_MEMBERS = "swarm-members"  # the servers the applications run on: a group the swarm declares
JENKINS = "jenkins"  # firewall.jenkins: where Jenkins' deployments come from
# Otherwise a server name (that server's private IP), or a group a service declares (Declaration.groups).

# What a service may offer others by role (Declaration.provides), rather than by its name.
OBJECT_STORE = "object-store"  # an S3 API (the backups' repositories)


@dataclass(frozen=True)
class Opening:
    """A port the firewall lets ``clients`` reach on ``server``, and no one else.

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


@dataclass(frozen=True)
class Listener:
    """A port a service binds on ``server``, and who may reach it.

    ``owner`` names it in the listener check's messages: the config key that sets the port when
    ``configured``, otherwise what binds it ("the registry"). ``label`` names it in the firewall
    matrix. ``clients`` ``None``: public, the host firewall leaves it alone (Nginx's 80 and 443).
    """

    server: str
    port: int
    owner: str
    label: str
    clients: Optional[tuple[str, ...]]
    protocol: str = "tcp"
    published: bool = True
    configured: bool = False

    def opening(self) -> Opening:
        assert self.clients is not None
        return Opening(self.server, self.label, self.port, self.protocol, self.published, self.clients)


@dataclass(frozen=True)
class RouteRules:
    """What a route to an upstream must say, each rule given with the reason its message tells; an empty
    reason is no rule."""

    # The route names the port (the upstream has none of its own): why.
    port_from_route: str = ""
    # An admin UI, named: a route to it must allow only private networks or small public ones.
    admin_ui: str = ""
    # Routes to it are at '/' only: why.
    root_path: str = ""
    # Exactly one route names it: why.
    one_route: str = ""


@dataclass(frozen=True)
class Upstream:
    """A service a route (``edge.routes``) may name as its ``upstream``.

    Nginx proxies to ``server``'s private IP on ``port`` (``None``: the route names the port, as a swarm
    service publishes its own), adding ``directives`` to every location of the upstream. With
    ``tls_server_name`` the private hop stays TLS and Nginx verifies the certificate for that name
    against the CA the edge is handed for this upstream (``EdgeArgs.ca_certificates``).
    """

    name: str
    server: str
    port: Optional[int]
    directives: tuple[str, ...] = ()
    scheme: str = "http"
    tls_server_name: Optional[str] = None
    rules: RouteRules = RouteRules()


class Route(Model):
    """``host`` (+ ``path``) served by Nginx, proxied to ``upstream``: a service's ``Upstream`` (checked
    against what the services offer, and against its ``RouteRules``, by ``load_deployment``). ``port``
    only for an upstream whose routes name it; ``allow`` limits the source networks."""

    host: HostName
    path: UrlPath = "/"
    upstream: str
    port: Optional[Port] = None
    allow: Optional[list[AllowedNetwork]] = Field(default=None, min_length=1)


@dataclass(frozen=True)
class Placement:
    """What a service puts on ``server``: the memory it may use (its container limits, or an installer's
    stated minimum), the CPUs it needs, and disk (backup repositories), checked against
    ``servers.<name>`` before anything is registered (``components/capacity.py``)."""

    server: ServerName
    what: str
    memory_mib: int
    min_cpus: int = 0
    disk_gib: float = 0


@dataclass(frozen=True)
class BackupSource:
    """One backup target: ``method`` (``components/services/backups/catalogue.py: METHODS``) of ``container``
    on ``server``. ``detail`` is the data path in the container (postgres, files) or the Vault CLI's name
    (vault-raft)."""

    server: str
    name: str
    method: str
    container: str = "-"
    detail: str = "-"


# Where published credentials live under Vault's KV mount ``kv``, by who reads them: the applications'
# deployments (Jenkins' policy reads each such path by name), or the platform's own operators only
# (backup repositories, admin accounts): no policy but root's reads those.
APPLICATIONS = "samarth"
PLATFORM = "platform"


@dataclass(frozen=True)
class Credentials:
    """What a service publishes to Vault at ``kv/<area>/<path>``: the keys (their values come when the
    component is built). ``area``: ``APPLICATIONS`` (``kv/samarth/``, for the applications' deployments)
    or ``PLATFORM`` (``kv/platform/``, operators only). ``key``: the config key that names these
    variables (a database service's ``env``), so a clash names where to change it."""

    path: str
    keys: tuple[str, ...]
    key: Optional[str] = None
    area: str = APPLICATIONS

    @property
    def kv_path(self) -> str:
        """The path under the KV mount: ``samarth/<path>`` or ``platform/<path>``."""
        return f"{self.area}/{self.path}"


def application_paths(declarations: Iterable[Declaration]) -> list[str]:
    """Every ``kv/samarth/`` path the services publish for the applications' deployments (what Jenkins
    may read), sorted."""
    return sorted({c.kv_path for d in declarations for c in d.credentials if c.area == APPLICATIONS})


@dataclass(frozen=True)
class Pull:
    """An image a service's own scripts pull on ``server`` (``docker run``, a compose installer), ``by``
    naming what pulls it. What the Docker provider pulls (its ``RemoteImage``s) is read from the program
    itself; these are the pulls it cannot see."""

    server: str
    image: str
    by: str


@dataclass(frozen=True)
class Declaration:
    """What one service declares from config alone."""

    listeners: tuple[Listener, ...] = ()
    # Connections the firewall allows to ports the service does not bind itself (the backups reaching
    # their repository) and protocols without a port (ESP).
    openings: tuple[Opening, ...] = ()
    # Groups of servers its listeners' clients may name (the swarm's members).
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Its listeners other services use by role (OBJECT_STORE), not by its name.
    provides: Mapping[str, Listener] = field(default_factory=dict)
    upstreams: tuple[Upstream, ...] = ()
    # Upstreams it knows but does not offer in this stack, with why (a disabled service).
    absent: Mapping[str, str] = field(default_factory=dict)
    backups: tuple[BackupSource, ...] = ()
    # What else it keeps that has no backup, and why.
    not_backed_up: Mapping[str, str] = field(default_factory=dict)
    credentials: tuple[Credentials, ...] = ()
    placements: tuple[Placement, ...] = ()
    # Images its scripts pull (the plan lists them with the Docker provider's, by source).
    pulls: tuple[Pull, ...] = ()

    @property
    def all_openings(self) -> tuple[Opening, ...]:
        """What the firewall lets through for it: its listeners' clients, then its other openings."""
        return (*(listener.opening() for listener in self.listeners if listener.clients is not None), *self.openings)


@dataclass(frozen=True)
class Service:
    """A service as ``components/assembly.py`` lists it: its name, ``declare(config, earlier)`` (what it
    declares from the stack config, ``earlier`` being what the services listed before it declared), and
    the one server it runs on (``None``: several, named in what it declares)."""

    name: str
    declare: Callable[[StackConfig, Sequence[Declaration]], Declaration]
    runs_on: Optional[ServerName] = None

    @property
    def server(self) -> ServerName:
        """The one server it runs on."""
        if self.runs_on is None:
            raise ValueError(f"{self.name} runs on several servers: they are in what it declares")
        return self.runs_on
