"""Everything the program places on the servers, for ``capacity.check_capacity``.

One list for the program (``__main__.py``) and for the lab, which decides from it what its small
machine can hold (``lab/stack.py``).
"""

from __future__ import annotations

from . import backups, data, edge, observability, registry, storage, vault
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
