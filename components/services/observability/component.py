"""Sentry and PostHog on the application server, each a compose project installed from a git
repository at a pinned ref.

``ComposeRelease`` is the one mechanism: clone (or fetch) the repository, check out the pinned tag or
commit, render the env file from the repository's own sample with the program's overrides, write a
compose override, run the project's deploy steps and record ``<ref> <fingerprint>`` in a marker file.
The same script is the command's ``create`` and ``update``: when the marker already says this ref and
this configuration it does nothing, otherwise it is the install (no checkout yet) or the upgrade path
(checkout present). Deleting the resource runs ``docker compose down`` without ``-v``: the data
volumes stay. Secrets reach the script on stdin, one per line, never in its text.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_command as command
import pulumi_random as random

from components.platform.host.component import BuildInputs, Host
from components.platform.host.containers import HEALTHCHECK_INTERVAL
from components.shared.publishing import CredentialBook
from components.shared.service import PLATFORM
from components.shared.shell import render

from .settings import SERVICE, ObservabilitySettings, PostHogImages, PostHogSettings, SentrySettings

SENTRY_REPOSITORY = "https://github.com/getsentry/self-hosted.git"
POSTHOG_REPOSITORY = "https://github.com/Samagra-Development/posthog-deploy.git"

# getsentry/self-hosted install/_min-requirements.sh's MIN_DOCKER_VERSION, MIN_COMPOSE_VERSION and MIN_BASH_VERSION at 25.10.0, checked
# before the installer runs (sentry-requirements.sh) so a missing prerequisite fails with what to do.
SENTRY_MIN_DOCKER = "19.03.6"
SENTRY_MIN_COMPOSE = "2.32.2"
SENTRY_MIN_BASH = "4.4.0"
# Sentry's own nginx (nginx.conf at 25.10.0) sets `X-Forwarded-Proto $scheme`, which is "http" behind our
# TLS-terminating Nginx; the install writes a copy that passes the header on, mounted in its place.
SENTRY_NGINX_CONF = "nginx.samarth.conf"

MARKER = ".samarth-release"
OVERRIDE_FILE = "docker-compose.override.yml"
_ENV_KEY = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass(frozen=True)
class ComposeRelease:
    """A compose project installed from ``repository`` at ``ref`` into ``directory``.

    ``env_file`` is rendered from the repository's ``env_base``: every line of the base except the
    keys the program sets, then ``settings`` (plain) and ``secret_settings`` (read from stdin). A key
    the base does not have is refused, so an upgrade that renames a setting stops instead of silently
    losing it. ``secret_variables`` are read from stdin for the deploy steps only, which run inside the
    checkout with ``dc`` as the project's ``docker compose`` and must themselves be idempotent.
    """

    name: str
    repository: str
    ref: str
    directory: str
    env_file: str
    env_base: str
    # The script (beside this module, in scripts/) that installs it (compose-lib.sh around the project's own
    # deploy steps) and the values it reads besides compose-lib.sh's, part of the fingerprint.
    install_file: str
    install_values: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)
    secret_settings: tuple[str, ...] = ()
    secret_variables: tuple[str, ...] = ()
    override: Optional[str] = None
    # Checked on the server before anything is fetched or installed; fails with what to fix.
    requirements: Optional[str] = None

    def __post_init__(self) -> None:
        for key, value in self.settings.items():
            if not _ENV_KEY.fullmatch(key) or "'" in value or "\n" in value:
                raise ValueError(f"{self.name}: setting {key}={value!r} cannot be written to {self.env_file}")
        for key in self.secrets:
            if not _ENV_KEY.fullmatch(key):
                raise ValueError(f"{self.name}: {key!r} is not a shell variable name")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Names of the values the scripts read from stdin, in order."""
        return self.secret_settings + self.secret_variables

    @property
    def pinned_commit(self) -> bool:
        return re.fullmatch(r"[0-9a-f]{40}", self.ref) is not None

    def fingerprint(self) -> str:
        """Digest of the versions and settings the install depends on (not of the script's text, so a
        reworded script does not reinstall); with the ref, the marker."""
        document = {
            "repository": self.repository,
            "settings": dict(sorted(self.settings.items())),
            "secrets": list(self.secrets),
            "override": self.override,
            "install": dict(sorted(self.install_values.items())),
            "envFile": self.env_file,
            "envBase": self.env_base,
        }
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]

    def stdin(self, values: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[str]:
        """The secrets as the install script reads them: one line each, in ``secrets`` order."""
        missing = [name for name in self.secrets if name not in values]
        if missing or set(values) - set(self.secrets):
            raise ValueError(f"{self.name}: stdin needs exactly {', '.join(self.secrets)}")
        parts: list[pulumi.Input[str]] = []
        for name in self.secrets:
            parts += [values[name], "\n"]
        return pulumi.Output.secret(pulumi.Output.concat(*parts))

    def install_script(self) -> str:
        return render(
            self.install_file,
            f"{self.name}-install",
            NAME=self.name,
            REPOSITORY=self.repository,
            REF=self.ref,
            VERIFY=f"{self.ref}^{{commit}}" if self.pinned_commit else f"refs/tags/{self.ref}^{{commit}}",
            KIND="commit" if self.pinned_commit else "release tag",
            DIRECTORY=self.directory,
            DESIRED=f"{self.ref} {self.fingerprint()}",
            MARKER=MARKER,
            ENV_FILE=self.env_file,
            ENV_BASE=self.env_base,
            SETTINGS="\n".join(f"{key}={value}" for key, value in self.settings.items()),
            SECRET_SETTINGS=" ".join(self.secret_settings),
            SECRETS=" ".join(self.secrets),
            OVERRIDE=(self.override or "").strip(),
            OVERRIDE_FILE=OVERRIDE_FILE,
            SERVER=SERVICE.server,
            **self.install_values,
        )

    def delete_script(self) -> str:
        return render(
            "compose-delete.sh",
            f"{self.name}-delete",
            NAME=self.name,
            DIRECTORY=self.directory,
            MARKER=MARKER,
            ENV_FILE=self.env_file,
        )


def sentry_requirements_script() -> str:
    """The installer's own prerequisites (install/_min-requirements.sh), checked before it runs."""
    return render(
        "sentry-requirements.sh",
        "sentry-requirements",
        MIN_DOCKER=SENTRY_MIN_DOCKER,
        MIN_COMPOSE=SENTRY_MIN_COMPOSE,
        MIN_BASH=SENTRY_MIN_BASH,
    )


def sentry_proxy_settings_script(settings: SentrySettings) -> str:
    """Writes system.url-prefix (sentry/config.yml), the proxy and CSRF settings (sentry/sentry.conf.py)
    and Sentry's nginx.conf with X-Forwarded-Proto passed on; run in the checkout before install.sh."""
    return render(
        "sentry-proxy-settings.sh",
        "sentry-proxy-settings",
        URL_PREFIX=f"https://{settings.host_name}",
        NGINX_CONF=SENTRY_NGINX_CONF,
    )


def sentry_release(settings: SentrySettings, ref: str, private_ip: str) -> ComposeRelease:
    return ComposeRelease(
        name="sentry",
        repository=SENTRY_REPOSITORY,
        ref=ref,
        directory=settings.directory,
        # self-hosted's install.sh and our `dc` use `.env.custom` instead of `.env` when it exists.
        env_file=".env.custom",
        env_base=".env",
        settings={
            "SENTRY_BIND": f"{private_ip}:{settings.port}",
            "SENTRY_EVENT_RETENTION_DAYS": str(settings.retention_days),
        },
        secret_variables=("SENTRY_ADMIN_PASSWORD",),
        requirements=sentry_requirements_script(),
        # self-hosted ignores docker-compose.override.yml in git and compose loads it by itself.
        override=f"""
services:
  nginx:
    volumes:
      - type: bind
        read_only: true
        source: ./{SENTRY_NGINX_CONF}
        target: /etc/nginx/nginx.conf
""",
        install_file="sentry-install.sh",
        install_values={
            "ADMIN_EMAIL": settings.admin_email,
            "URL_PREFIX": f"https://{settings.host_name}",
            "NGINX_CONF": SENTRY_NGINX_CONF,
        },
    )


# posthog-deploy's services that build build/Dockerfile.Posthog (FROM posthog/posthog:release-1.40.0
# plus ./compose and ./docker-server): they run the pinned web image instead, web with those two
# mounted where the Dockerfile copied them.
POSTHOG_APP_SERVICES = ("web", "worker", "plugins", "asyncmigrationscheck")
# Every service of posthog-deploy's docker-compose.yml at the pinned commit, by how it runs: the install
# starts and waits for the long-running ones; a one-shot (`restart: 'no'`, `scale: 0`: the async
# migrations check, run by hand) would fail `up --wait` when it exits, so it is never named. The install
# refuses a checkout whose services differ from these, as it refuses an env file without a key it sets.
POSTHOG_SERVICES = ("db", "redis", "clickhouse", "zookeeper", "kafka", "worker", "web", "plugins", "object_storage")
POSTHOG_ONE_SHOTS = ("asyncmigrationscheck",)
# compose/start runs `./bin/docker-server` directly, and the checkout's docker-server is mode 100644 at
# 063b964: the install copies it with mode 0755 (`install -m 0755`, whatever git or the umask left) to
# this untracked file, which web mounts in its place. A later checkout resets the tracked file, not this.
POSTHOG_SERVER_SCRIPT = "docker-server.samarth"
# How long `up --wait` waits for every long-running service to run, and web to accept connections: a
# first install runs PostHog's Postgres and ClickHouse migrations before gunicorn listens. Also web's
# healthcheck grace (start_period), so only this timeout decides. Then the install watches the containers
# for a window without a restart (a service without a healthcheck counts as up while it is running, so a
# crash loop shows as its restart count rising): longer than Docker's longest wait between restarts (a
# minute), tried a few times, as a service that crashed while web migrated may restart once more.
POSTHOG_WAIT_SECONDS = 900
POSTHOG_SETTLE_SECONDS = 90
POSTHOG_SETTLE_WINDOWS = 4
# apache/kafka's image creates /var/lib/kafka/data for its user appuser (docker/jvm/Dockerfile), but with
# any KAFKA_* variable set its server.properties holds only those, and Kafka's default log.dir is
# /tmp/kafka-logs, in the container's writable layer. KAFKA_LOG_DIRS points it at a named volume there,
# which Docker fills from the image (owner appuser) on first use. External, created by the install like
# self-hosted Sentry's stateful volumes, so `docker compose down -v` keeps it too.
POSTHOG_KAFKA_DATA = "/var/lib/kafka/data"
POSTHOG_KAFKA_VOLUME = "posthog-kafka-data"
# apache/kafka in KRaft mode formats its storage with CLUSTER_ID (docker/jvm/launch; `ub ensure CLUSTER_ID`
# in docker/jvm/include/etc/kafka/docker/configure): 16 bytes in base64url (22 characters), fixed for this
# one-broker cluster (the first 16 bytes of sha256("samarth-posthog-kafka")).
POSTHOG_KAFKA_CLUSTER_ID = "oQ-bP7agMF_xAp1xexsgcg"


def posthog_override(settings: PostHogSettings, images: PostHogImages, minio: str, private_ip: str) -> str:
    """The compose override for posthog-deploy: every image pinned (versions.posthogImages, and
    versions.minio for object storage), Kafka on the Apache image in KRaft mode instead of the
    withdrawn bitnami/kafka with its log on a named volume, web on the private IP with its server
    script executable and a healthcheck, Postgres not published."""
    app = "\n".join(
        f"""  {name}:
    build: !reset null
    image: {images.web}"""
        for name in POSTHOG_APP_SERVICES
        if name != "web"
    )
    return f"""
services:
  db:
    image: {images.postgres}
    ports: !reset []
  redis:
    image: {images.redis}
  zookeeper:
    image: {images.zookeeper}
  clickhouse:
    # build/Dockerfile.Clickhouse only copies files the service also mounts.
    build: !reset null
    image: {images.clickhouse}
  kafka:
    image: {images.kafka}
    # One combined broker and controller (KRaft): bitnami's KAFKA_CFG_* variables mean nothing here.
    environment: !override
      CLUSTER_ID: {POSTHOG_KAFKA_CLUSTER_ID}
      KAFKA_NODE_ID: "1"
      KAFKA_PROCESS_ROLES: broker,controller
      KAFKA_LISTENERS: PLAINTEXT://:9092,CONTROLLER://:9093
      KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka:9092
      KAFKA_CONTROLLER_LISTENER_NAMES: CONTROLLER
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
      KAFKA_CONTROLLER_QUORUM_VOTERS: 1@localhost:9093
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: "1"
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: "1"
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: "1"
      KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: "0"
      KAFKA_AUTO_CREATE_TOPICS_ENABLE: "true"
      KAFKA_LOG_DIRS: {POSTHOG_KAFKA_DATA}
    volumes:
      - {POSTHOG_KAFKA_VOLUME}:{POSTHOG_KAFKA_DATA}
  web:
    build: !reset null
    image: {images.web}
    ports: !override
      - "{private_ip}:{settings.port}:8000"
    volumes:
      - ./compose:/compose
      - ./{POSTHOG_SERVER_SCRIPT}:/code/bin/docker-server:ro
    # docker-server binds gunicorn to 0.0.0.0:8000; the image has python (compose runs manage.py).
    healthcheck:
      test: ["CMD", "python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8000), 5).close()"]
      interval: {HEALTHCHECK_INTERVAL}
      timeout: 10s
      retries: 3
      start_period: {POSTHOG_WAIT_SECONDS}s
{app}
  object_storage:
    image: {minio}
volumes:
  {POSTHOG_KAFKA_VOLUME}:
    external: true
"""


def posthog_release(settings: PostHogSettings, ref: str, images: PostHogImages, minio: str, private_ip: str) -> ComposeRelease:
    return ComposeRelease(
        name="posthog",
        repository=POSTHOG_REPOSITORY,
        ref=ref,
        directory=settings.directory,
        env_file=".env",
        env_base="sample.env",
        settings={
            "DOMAIN": settings.host_name,
            "SITE_URL": f"https://{settings.host_name}",
            "MINIO_ROOT_USER": "posthog",
        },
        secret_settings=("POSTGRES_PASSWORD", "DATABASE_URL", "SECRET_KEY", "MINIO_ROOT_PASSWORD"),
        # posthog-deploy publishes web as "${PORT}:8000" and Postgres as "${POSTGRES_PORT}:6432", both on
        # every interface. Web goes to the private IP (Nginx proxies it); Postgres is not published at all
        # (`!reset`/`!override` need Docker Compose 2.24.4 or newer; `dc config` checks that).
        override=posthog_override(settings, images, minio, private_ip),
        install_file="posthog-install.sh",
        install_values={
            "SERVICES": " ".join(POSTHOG_SERVICES),
            "ONE_SHOTS": " ".join(POSTHOG_ONE_SHOTS),
            "SERVER_SCRIPT": POSTHOG_SERVER_SCRIPT,
            "KAFKA_VOLUME": POSTHOG_KAFKA_VOLUME,
            "WAIT_SECONDS": str(POSTHOG_WAIT_SECONDS),
            "SETTLE_SECONDS": str(POSTHOG_SETTLE_SECONDS),
            "SETTLE_WINDOWS": str(POSTHOG_SETTLE_WINDOWS),
        },
    )


@dataclass(frozen=True)
class ComposeInstallArgs:
    host: Host
    release: ComposeRelease
    secrets: Mapping[str, pulumi.Input[str]]


class ComposeInstall(pulumi.ComponentResource):
    """A ``ComposeRelease`` kept installed on ``host`` by one remote command."""

    def __init__(self, name: str, args: ComposeInstallArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:observability:ComposeInstall", name, None, opts)
        release = args.release
        install = release.install_script()
        checked: list[pulumi.Resource] = []
        if release.requirements is not None:
            checked.append(
                command.remote.Command(
                    f"{name}-requirements",
                    connection=args.host.connection,
                    create=release.requirements,
                    # Re-checked whenever the release or its requirements change.
                    triggers=[release.ref, release.requirements],
                    opts=args.host.command_options(self),
                )
            )
        self.command = command.remote.Command(
            f"{name}-install",
            connection=args.host.connection,
            create=install,
            # Any input change (a new ref, new settings) runs the same guarded script: the upgrade path.
            update=install,
            delete=release.delete_script(),
            stdin=release.stdin(args.secrets),
            logging=command.remote.Logging.NONE,
            # The script reads its state from the server (the marker), not from the previous run's output.
            add_previous_output_in_env=False,
            # The installer pulls its images, from Docker Hub among others: through the mirror, once it answers.
            opts=args.host.command_options(self, depends_on=[*checked, *args.host.hub_pull_gate]),
        )
        self.register_outputs({"ref": release.ref, "directory": release.directory})


@dataclass(frozen=True)
class ObservabilityArgs:
    host: Host
    settings: ObservabilitySettings
    # versions.sentry and versions.posthog: the releases installed.
    sentry_ref: str
    posthog_ref: str
    # versions.posthogImages and versions.minio: the images PostHog's compose project runs.
    posthog_images: PostHogImages
    minio_image: str
    book: CredentialBook


class Observability(pulumi.ComponentResource):
    """Sentry and PostHog (those enabled) on the application server, their credentials added to the book."""

    # None for a service the stack does not install.
    sentry: Optional[ComposeInstall] = None
    posthog: Optional[ComposeInstall] = None
    sentry_upstream: Optional[str] = None
    posthog_upstream: Optional[str] = None

    def __init__(self, name: str, args: ObservabilityArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("samarth:observability:Observability", name, None, opts)
        host, settings = args.host, args.settings
        private_ip = host.spec.private_ip

        def password(what: str, length: int) -> pulumi.Output[str]:
            generated = random.RandomPassword(
                f"{name}-{what}", length=length, special=False, opts=pulumi.ResourceOptions(parent=self)
            )
            return pulumi.Output.secret(generated.result)

        outputs: dict[str, str] = {}
        if settings.sentry.enabled:
            self.sentry_upstream = outputs["sentryUpstream"] = f"{private_ip}:{settings.sentry.port}"
            admin_password = password("sentry-admin-password", 32)
            self.sentry = ComposeInstall(
                f"{name}-sentry",
                ComposeInstallArgs(
                    host=host,
                    release=sentry_release(settings.sentry, args.sentry_ref, private_ip),
                    secrets={"SENTRY_ADMIN_PASSWORD": admin_password},
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            args.book.add("sentry", {"SENTRY_URL": f"https://{settings.sentry.host_name}"})
            # The admin account is the operators', not the applications': out of Jenkins' reach.
            args.book.add(
                "sentry",
                {"SENTRY_ADMIN_EMAIL": settings.sentry.admin_email, "SENTRY_ADMIN_PASSWORD": admin_password},
                area=PLATFORM,
            )

        if settings.posthog.enabled:
            self.posthog_upstream = outputs["posthogUpstream"] = f"{private_ip}:{settings.posthog.port}"
            db_password = password("posthog-db-password", 32)
            secret_key = password("posthog-secret-key", 64)
            minio_password = password("posthog-minio-password", 32)
            # posthog-deploy's sample: user and database `posthog` on the `posthog_db` host, port 6432.
            database_url: pulumi.Output[str] = pulumi.Output.secret(
                pulumi.Output.concat("postgres://posthog:", db_password, "@posthog_db:6432/posthog")
            )
            self.posthog = ComposeInstall(
                f"{name}-posthog",
                ComposeInstallArgs(
                    host=host,
                    release=posthog_release(
                        settings.posthog,
                        args.posthog_ref,
                        args.posthog_images,
                        args.minio_image,
                        private_ip,
                    ),
                    secrets={
                        "POSTGRES_PASSWORD": db_password,
                        "DATABASE_URL": database_url,
                        "SECRET_KEY": secret_key,
                        "MINIO_ROOT_PASSWORD": minio_password,
                    },
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            args.book.add("posthog", {"POSTHOG_URL": f"https://{settings.posthog.host_name}"})
            args.book.add(
                "posthog",
                {
                    "POSTHOG_POSTGRES_PASSWORD": db_password,
                    "POSTHOG_SECRET_KEY": secret_key,
                    "POSTHOG_MINIO_ROOT_USER": "posthog",
                    "POSTHOG_MINIO_ROOT_PASSWORD": minio_password,
                },
                area=PLATFORM,
            )

        self.exports: dict[str, pulumi.Input[str]] = {}
        self.register_outputs(outputs)


def build(inputs: BuildInputs) -> Observability:
    """Sentry and PostHog (those enabled) on their server, with the versions the stack pins."""
    config = inputs.config
    return Observability(
        "observability",
        ObservabilityArgs(
            host=inputs.hosts[SERVICE.server],
            settings=config.observability,
            sentry_ref=config.versions.sentry,
            posthog_ref=config.versions.posthog,
            posthog_images=config.versions.posthog_images,
            minio_image=config.versions.minio,
            book=inputs.book,
        ),
    )
