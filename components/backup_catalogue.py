"""What is backed up and how, as data: every stateful thing the program deploys has a line here, either a
method the backup agent runs or the reason it is not backed up.

No Pulumi here. ``components.config`` validates the ``backups`` section against ``METHODS``;
``components.backups`` turns ``Source`` lists into agents, timers and repositories. Adding a backing
service to ``components/catalogue.py`` gives it a backup through ``ENGINES`` below, with no other change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Optional

# How the agent (components/scripts/backup-agent.sh) takes each kind of backup.
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


@dataclass(frozen=True)
class Coverage:
    """How one kind of data is covered: a ``method`` from ``METHODS``, or ``None`` and why not."""

    method: Optional[str]
    reason: str


SEARCH_INDEX = Coverage(
    None,
    "FusionAuth's search index is derived from its Postgres database (backed up hourly); after a restore, "
    "FusionAuth rebuilds it (System > Reindex, or POST /api/system/reindex), so a snapshot would only add "
    "gigabytes of repository for data that can be recomputed",
)

# Per database engine (components/catalogue.py ENGINES); PURE_CACHES overrides it per service.
ENGINES: Mapping[str, Coverage] = MappingProxyType(
    {
        "postgres": Coverage("postgres", "the services' system of record"),
        "redis": Coverage("redis", "holds queued jobs or counters that exist nowhere else"),
        "rabbitmq": Coverage(
            "rabbitmq",
            "definitions only: the brokers carry Celery/worker task messages that are stale within minutes and are "
            "re-created by the applications; replaying hours-old tasks after a restore would do harm, so messages "
            "are not kept",
        ),
        "elasticsearch": SEARCH_INDEX,
        "opensearch": SEARCH_INDEX,
    }
)

# (service, engine) whose Redis only caches what lives elsewhere: not backed up.
PURE_CACHES: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("esamwad-backend", "redis"): "eSamwad's Django cache (the platform notes: 'Redis its cache'); "
        "an empty cache refills from Postgres",
        ("airflow", "redis"): "Airflow's Celery broker: task state lives in Airflow's Postgres and the scheduler "
        "re-queues queued tasks after a broker loss",
    }
)


def engine_coverage(service: str, engine: str) -> Coverage:
    cache = PURE_CACHES.get((service, engine))
    return Coverage(None, cache) if cache else ENGINES[engine]


# Stateful things the program deploys that have no backup, and why (the application-server services,
# the swarm and the Pulumi state are sources in components/assembly.py).
NOT_BACKED_UP: Mapping[str, str] = MappingProxyType(
    {
        "vault audit log": "an audit trail, not needed to restore Vault; it stays on its protected volume",
        "minio (other than doc-generator)": "MinIO's own settings, users and policies are declared by this program "
        "and re-created by `pulumi up`; the samarth-backups bucket is itself the repository of db1, db2 and swarm-master",
        "sentry": "telemetry (error events) with its own retention; losing it loses history, not the platform. "
        "Its organisations and projects can be exported with `docker compose run --rm -T web export` (docs/backups.md)",
        "posthog": "product analytics events, rebuilt from new traffic; not needed to run Samarth. Its compose "
        "project's volumes stay when it is stopped or deleted (no `down -v`); Kafka's log, on the external volume "
        "posthog-kafka-data, holds only events on their way into ClickHouse",
        "swarm workers": "hold no state of their own: the manager's raft store has the services, the registry the images",
        "nginx": "stateless: its configuration and certificates' paths are rendered by this program",
    }
)
