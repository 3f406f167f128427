"""How the databases' data is backed up, as data: per engine a method the backup agent runs
(``components/services/backups/catalogue.py: METHODS``) or the reason it is not backed up, and the
services whose Redis only caches. No Pulumi here. A service added to the catalogue is backed up
through its engines with no other change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Optional


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

# Per database engine (catalogue.ENGINES); PURE_CACHES overrides it per service.
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
