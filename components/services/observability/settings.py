"""Sentry's and PostHog's settings (``observability``) and what they declare: their ports (Nginx's
container only), the route from each one's host name, the credentials they publish, the installers'
minimums. No Pulumi here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from components.shared.model import AbsolutePath, Domain, Email, ImageRef, Model, Port
from components.shared.service import (
    CONTAINERS,
    PLATFORM,
    Credentials,
    Declaration,
    Listener,
    Placement,
    Pull,
    Route,
    Service,
    Upstream,
)

if TYPE_CHECKING:
    from components.config import StackConfig

# getsentry/self-hosted install/_min-requirements.sh: the installer stops below MIN_RAM_HARD=14000
# (`free -m`, so MiB, as Docker sees it) and MIN_CPU_HARD=4 for the full (non errors-only) profile.
SENTRY_MIN_MEMORY_MIB = 14000
SENTRY_MIN_CPUS = 4
# The posthog-deploy "hobby" stack (Postgres, Redis, ClickHouse, Kafka, ZooKeeper, MinIO, web,
# worker, plugins) needs at least 8 GB.
POSTHOG_MIN_MEMORY_MIB = 8192

# What getsentry/self-hosted's install.sh pulls, by release: `.env`'s *_IMAGE, the `image:` of every
# service of `docker-compose.yml` and the BASE_IMAGE of those it builds, and what its install/ scripts
# `docker run` (busybox, alpine: untagged, so `latest`). Kept as fixtures in
# tests/support/fixtures/upstreams/sentry-self-hosted-25.10.0/ (a unit test reads them).
SENTRY_IMAGES: dict[str, tuple[str, ...]] = {
    "25.10.0": (
        "ghcr.io/getsentry/sentry:25.10.0",
        "ghcr.io/getsentry/snuba:25.10.0",
        "ghcr.io/getsentry/relay:25.10.0",
        "ghcr.io/getsentry/symbolicator:25.10.0",
        "ghcr.io/getsentry/taskbroker:25.10.0",
        "ghcr.io/getsentry/vroom:25.10.0",
        "ghcr.io/getsentry/uptime-checker:25.10.0",
        "registry.gitlab.com/egos-tech/smtp",
        "memcached:1.6.26-alpine",
        "redis:6.2.20-alpine",
        "postgres:14.19-bookworm",
        "edoburu/pgbouncer:v1.24.1-p1",
        "confluentinc/cp-kafka:7.6.6",
        "altinity/clickhouse-server:25.3.6.10034.altinitystable",
        "chrislusf/seaweedfs:3.96_large_disk",
        "nginx:1.29.1-alpine",
        "busybox",
        "alpine",
    ),
}

# What each publishes for the services' CI jobs, at kv/samarth/<name>: where it is served.
SENTRY_CREDENTIALS = ("SENTRY_URL",)
POSTHOG_CREDENTIALS = ("POSTHOG_URL",)
# Their admin accounts and internal secrets, for operators only, at kv/platform/<name>.
SENTRY_ADMIN_CREDENTIALS = ("SENTRY_ADMIN_EMAIL", "SENTRY_ADMIN_PASSWORD")
POSTHOG_ADMIN_CREDENTIALS = (
    "POSTHOG_POSTGRES_PASSWORD",
    "POSTHOG_SECRET_KEY",
    "POSTHOG_MINIO_ROOT_USER",
    "POSTHOG_MINIO_ROOT_PASSWORD",
)


class PostHogImages(Model):
    """The images the pinned posthog-deploy compose file runs, each replaced by this pin in the program's
    compose override (components/services/observability/component.py; docs/upstreams.md says why each one)."""

    web: ImageRef
    clickhouse: ImageRef
    kafka: ImageRef
    zookeeper: ImageRef
    postgres: ImageRef
    redis: ImageRef


class SentrySettings(Model):
    """Self-hosted Sentry on the application server; Nginx serves ``hostName`` from ``privateIp:port``.
    ``enabled: false`` leaves it out altogether (install, credentials, route, capacity)."""

    enabled: bool = True
    host_name: Domain = Field(alias="hostName")
    port: Port = 9000
    admin_email: Email = Field(alias="adminEmail")
    retention_days: int = Field(default=90, alias="retentionDays", ge=1, le=3650)
    directory: AbsolutePath = "/opt/samarth/sentry"


class PostHogSettings(Model):
    """PostHog (posthog-deploy) on the application server; Nginx serves ``hostName`` over HTTPS.
    ``enabled: false`` leaves it out altogether (install, credentials, route, capacity)."""

    enabled: bool = True
    host_name: Domain = Field(alias="hostName")
    port: Port = 8023
    directory: AbsolutePath = "/opt/samarth/posthog"


OBSERVABILITY_SERVICES = ("sentry", "posthog")


class ObservabilitySettings(Model):
    sentry: SentrySettings
    posthog: PostHogSettings

    def enabled(self) -> list[str]:
        """Names of the services this stack installs, of ``OBSERVABILITY_SERVICES``."""
        return [name for name in OBSERVABILITY_SERVICES if getattr(self, name).enabled]

    @model_validator(mode="after")
    def _distinct(self) -> ObservabilitySettings:
        if self.sentry.port == self.posthog.port:
            raise ValueError(f"posthog.port: {self.posthog.port} is already sentry.port")
        # Each compose project owns its directory: one inside another would be cloned, reset or removed with it.
        for index, name in enumerate(OBSERVABILITY_SERVICES):
            for other in OBSERVABILITY_SERVICES[:index]:
                mine, theirs = getattr(self, name).directory, getattr(self, other).directory
                if mine == theirs:
                    raise ValueError(f"{name}.directory: {mine} is already {other}.directory")
                for inner, outer, inner_name, outer_name in ((mine, theirs, name, other), (theirs, mine, other, name)):
                    if inner.startswith(outer + "/"):
                        raise ValueError(
                            f"{name}.directory: {inner_name}.directory {inner} is inside {outer_name}.directory {outer}; "
                            "each compose project needs a directory of its own, apart from the other's"
                        )
        return self



def routes(settings: ObservabilitySettings) -> list[tuple[str, Route]]:
    """The route to each enabled one at its ``hostName``, with the key it comes from."""
    return [
        (f"observability.{name}.hostName", Route(host=getattr(settings, name).host_name, upstream=name))
        for name in settings.enabled()
    ]


def declare(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
    settings = config.observability
    server = SERVICE.server
    enabled = settings.enabled()
    # Uploads (crash dumps, session recordings) are large.
    every = {
        "sentry": (
            Upstream("sentry", server, settings.sentry.port, ("client_max_body_size 100m;",)),
            Placement(server, "Sentry (self-hosted installer minimum)", SENTRY_MIN_MEMORY_MIB, SENTRY_MIN_CPUS),
            (Credentials("sentry", SENTRY_CREDENTIALS), Credentials("sentry", SENTRY_ADMIN_CREDENTIALS, area=PLATFORM)),
            "Sentry",
        ),
        "posthog": (
            Upstream("posthog", server, settings.posthog.port, ("client_max_body_size 20m;",)),
            Placement(server, "PostHog (posthog-deploy hobby stack)", POSTHOG_MIN_MEMORY_MIB),
            (Credentials("posthog", POSTHOG_CREDENTIALS), Credentials("posthog", POSTHOG_ADMIN_CREDENTIALS, area=PLATFORM)),
            "PostHog",
        ),
    }
    return Declaration(
        # Published on the private IP for Nginx's container only.
        listeners=tuple(
            Listener(server, getattr(settings, name).port, f"observability.{name}.port", every[name][3], (CONTAINERS,), configured=True)
            for name in enabled
        ),
        upstreams=tuple(every[name][0] for name in enabled),
        absent={name: f"observability.{name}.enabled is false" for name in OBSERVABILITY_SERVICES if name not in enabled},
        not_backed_up={
            "sentry": "telemetry (error events) with its own retention; losing it loses history, not the platform. "
            "Its organisations and projects can be exported with `docker compose run --rm -T web export` (docs/backups.md)",
            "posthog": "product analytics events, rebuilt from new traffic; not needed to run Samarth. Its compose "
            "project's volumes stay when it is stopped or deleted (no `down -v`); Kafka's log, on the external volume "
            "posthog-kafka-data, holds only events on their way into ClickHouse",
        },
        credentials=tuple(credentials for name in enabled for credentials in every[name][2]),
        placements=tuple(every[name][1] for name in enabled),
        pulls=pulls(config, enabled),
    )


def pulls(config: StackConfig, enabled: Sequence[str]) -> tuple[Pull, ...]:
    """What the installers pull: Sentry's release's images (an empty image: not recorded for that
    release), PostHog's pinned images and the MinIO its override runs."""
    server = SERVICE.server
    found: list[Pull] = []
    if "sentry" in enabled:
        by = f"Sentry's install.sh (getsentry/self-hosted {config.versions.sentry})"
        found += [Pull(server, image, by) for image in SENTRY_IMAGES.get(config.versions.sentry, ("",))]
    if "posthog" in enabled:
        by = "PostHog's compose project (the program's override)"
        images = config.versions.posthog_images
        found += [Pull(server, image, by) for image in (*images.model_dump().values(), config.versions.minio)]
    return tuple(found)


SERVICE = Service("observability", declare, "application")
