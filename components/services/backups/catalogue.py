"""The backup methods, as data: how the agent takes each kind of backup, and how much data each kind
holds when the stack does not say. No Pulumi here.

What each service backs up (``BackupSource``) and why the rest of its state is not (``not_backed_up``)
it declares itself (``components/shared/service.py: Declaration``); ``components/config.py`` validates
``backups.schedules`` against ``METHODS`` (``settings.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# How the agent (components/services/backups/scripts/backup-agent.sh) takes each kind of backup.
METHODS: Mapping[str, str] = MappingProxyType(
    {
        "postgres": "pg_dumpall --globals-only (roles), then pg_dump -Fc per database, each streamed into restic; "
        "a run counts only when every dump exited 0",
        "redis": "redis-cli --rdb - (a point-in-time RDB the server forks for it), streamed into restic",
        "rabbitmq": "rabbitmqctl export_definitions - (users, vhosts, permissions, queues, exchanges, bindings, policies)",
        "vault-raft": "vault operator raft snapshot save, with an AppRole token whose policy allows only that",
        "files": "restic backup of a directory of a container's volume (content-addressed or write-once data)",
        "swarm": "/var/lib/docker/swarm on the manager, plus `docker service inspect` of every deployed service",
    }
)

# Expected size of a target's data when the stack does not declare one (backups.dataGib), in GiB.
DEFAULT_DATA_GIB: Mapping[str, float] = MappingProxyType(
    {"postgres": 5, "redis": 0.5, "rabbitmq": 0.01, "vault-raft": 0.1, "files": 20, "swarm": 0.5}
)
