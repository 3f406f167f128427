"""What every service component declares from config alone, gathered in one place: what it places on
the servers (``placements``), what it offers Nginx (``upstreams``) and what the backups take from it.

The one module under components/ that imports the service components (``tests/test_structure.py``):
``load_deployment`` checks the routes and the capacity against what is gathered here before any
resource is registered, and hands it on in the ``Deployment``, from which ``__main__.py`` passes the
upstreams to the edge and the backup sources to the backups. The lab decides from the same lists what
its small machine can hold (``lab/stack.py``).
"""

from __future__ import annotations

from components.services.backups import component as backups
from components.services.databases import component as data
from components.services.edge import component as edge
from components.services.observability import component as observability
from components.services.registry import component as registry
from components.services.storage import component as storage
from components.services.swarm import component as swarm
from components.services.vault import component as vault
from components.shared.ports import Upstream

from .capacity import Placement
from .config import SWARM_MANAGER, StackConfig


def backup_sources(config: StackConfig) -> list[backups.Source]:
    """Every backup target: the database containers the catalogue backs up, and what the application
    server and the swarm manager hold (names as ``__main__.py`` gives these components)."""
    if not config.backups.enabled:
        return []
    dist = vault.DISTRIBUTIONS[config.vault.distribution]
    return [
        *backups.database_sources(config),
        backups.Source(vault.SERVER, "vault", "vault-raft", "vault", dist.binary),
        backups.Source(storage.SERVER, f"minio-{storage.BUCKET}", "files", "minio", f"/data/{storage.BUCKET}"),
        backups.Source(registry.SERVER, "registry", "files", "registry", registry.STORAGE_PATH),
        backups.Source(SWARM_MANAGER, "swarm", "swarm"),
    ]


def stack_placements(config: StackConfig) -> list[Placement]:
    return [
        *backups.repository_placements(config, backup_sources(config)),
        *data.placements(config),
        *vault.placements(config),
        *storage.placements(config),
        *registry.placements(config),
        *observability.placements(config),
        *edge.placements(config),
    ]


def stack_upstreams(config: StackConfig) -> list[Upstream]:
    """Every upstream a route may name in this stack, each declared by the component that runs it."""
    return [
        *registry.upstreams(config),
        *storage.upstreams(config),
        *vault.upstreams(config),
        *observability.upstreams(config),
        *swarm.upstreams(config),
    ]
