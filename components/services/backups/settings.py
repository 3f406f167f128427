"""The backups' settings (``backups``) and what they declare from every other service's backup sources:
where each server's repository lives and the firewall openings to it, the repositories' disk, the
credentials published at ``kv/platform/backups`` (operators only). No Pulumi here."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal, Optional

from pydantic import AfterValidator, Field, field_validator, model_validator

from components.shared.model import (
    PRIVATE_NETWORKS,
    CalendarEvent,
    HostKey,
    Model,
    Port,
    ServerName,
    TimeSpan,
    address,
    server_name,
)
from components.shared.service import (
    OBJECT_STORE,
    PLATFORM,
    PULUMI,
    BackupSource,
    Credentials,
    Declaration,
    Listener,
    Opening,
    Placement,
    Service,
)

from .catalogue import DEFAULT_DATA_GIB, METHODS

if TYPE_CHECKING:
    from components.config import StackConfig

# What is published per server with targets, prefixed with its name (DB1_RESTIC_REPOSITORY); the S3 keys
# only for a repository in the object store.
CREDENTIALS = ("RESTIC_REPOSITORY", "RESTIC_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

def _one_word(value: str) -> str:
    if " " in value:
        raise ValueError(
            f"{value!r} has a space, and the backup agent's target table is split on spaces; write the schedule "
            "without one: a time alone ('02:30'), a repetition ('*:0/15'), weekdays ('Mon..Fri') or a name ('hourly')"
        )
    return value


# A timer's OnCalendar= for a backup target: any calendar event without a space.
BackupSchedule = Annotated[CalendarEvent, AfterValidator(_one_word)]
_HOURLY_POSTGRES: dict[str, BackupSchedule] = {"postgres": "hourly"}


class BackupRetention(Model):
    """How many snapshots ``restic forget`` keeps per target (``--keep-hourly`` and so on)."""

    hourly: int = Field(default=24, ge=0)
    daily: int = Field(default=14, ge=0)
    weekly: int = Field(default=8, ge=0)
    monthly: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _keeps_something(self) -> BackupRetention:
        if not (self.hourly or self.daily or self.weekly or self.monthly):
            raise ValueError("keeps no snapshot at all: set at least one of hourly, daily, weekly, monthly")
        return self


# Where an off-site repository may be: an S3 endpoint (https, or http only to a private address) with a
# bucket, or an absolute directory over SFTP. Each server's repository is a sub-path named after it.
_OFFSITE_S3 = re.compile(r"s3:(?P<scheme>https?)://(?P<host>[^/:]+)(:(?P<port>[0-9]{1,5}))?/(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?P<prefix>(/[A-Za-z0-9._-]+)*)/?", re.A)
_OFFSITE_SFTP = re.compile(r"sftp:(?P<user>[a-z_][a-z0-9_.-]*)@(?P<host>[^:/@]+):(?P<path>/[A-Za-z0-9._/-]*)", re.A)
OFFSITE_FORMS = "s3:https://<host>[:port]/<bucket>[/prefix] or sftp:<user>@<host>:/<absolute path>"


def _offsite_repository(value: str) -> str:
    s3, sftp = _OFFSITE_S3.fullmatch(value), _OFFSITE_SFTP.fullmatch(value)
    match = s3 or sftp
    if match is None:
        raise ValueError(f"{value!r} is not an off-site repository ({OFFSITE_FORMS})")
    address(match["host"])
    if s3 and s3["port"] is not None and not 1 <= int(s3["port"]) <= 65535:
        raise ValueError(f"{value!r}: port {s3['port']} is out of range (1 to 65535)")
    if s3 and s3["scheme"] == "http" and not _is_private_address(s3["host"]):
        raise ValueError(f"{value!r}: plain http only to a private address; use https for {s3['host']}")
    if sftp and "/../" in f"{sftp['path']}/":
        raise ValueError(f"{value!r}: the path may not contain '..'")
    return value.rstrip("/")


def _is_private_address(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or any(ip in network for network in PRIVATE_NETWORKS)


class OffsiteRepository(Model):
    """A second repository outside the six servers (docs/backups.md, "Off-site copy"): after each complete
    run the agent copies it there with ``restic copy``. S3: ``accessKeyId`` here, the secret key as the
    secret config ``backupsOffsiteSecretAccessKey``. SFTP: the host's ``hostKey`` (pinned); each server
    logs in with its own key, made on the server, whose public half the operator installs there."""

    repository: Annotated[str, AfterValidator(_offsite_repository)]
    access_key_id: Optional[str] = Field(default=None, alias="accessKeyId", pattern=r"^[A-Za-z0-9+/=._-]{3,128}$")
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{2,32}$")
    host_key: Optional[HostKey] = Field(default=None, alias="hostKey")
    ssh_port: Port = Field(default=22, alias="sshPort")
    # Unset: the same as backups.retention.
    retention: Optional[BackupRetention] = None

    @property
    def kind(self) -> Literal["s3", "sftp"]:
        return "s3" if self.repository.startswith("s3:") else "sftp"

    @property
    def host(self) -> str:
        """The S3 endpoint's or the SFTP server's host name or address."""
        match = _OFFSITE_S3.fullmatch(self.repository) or _OFFSITE_SFTP.fullmatch(self.repository)
        return match["host"] if match else ""

    @model_validator(mode="after")
    def _credentials_fit_the_kind(self) -> OffsiteRepository:
        if self.kind == "s3":
            if self.access_key_id is None:
                raise ValueError("accessKeyId: required for an S3 repository (its secret key: `pulumi config set --secret backupsOffsiteSecretAccessKey`)")
            if self.host_key is not None or "ssh_port" in self.model_fields_set:
                raise ValueError("hostKey and sshPort are for an SFTP repository; this one is S3")
        else:
            if self.host_key is None:
                raise ValueError("hostKey: required for an SFTP repository (the off-site host's SSH host key, pinned: ssh-keyscan it and compare the fingerprint)")
            if self.access_key_id is not None or "region" in self.model_fields_set:
                raise ValueError("accessKeyId and region are for an S3 repository; this one is SFTP")
        return self


class Backups(Model):
    """Scheduled restic backups of every stateful service (see components/services/backups/component.py)."""

    enabled: bool = True
    # Per backup method (postgres, redis, rabbitmq, vault-raft, files, swarm); the rest use ``defaultSchedule``.
    schedules: dict[str, BackupSchedule] = Field(default_factory=lambda: _HOURLY_POSTGRES.copy())
    default_schedule: BackupSchedule = Field(default="daily", alias="defaultSchedule")
    # Each timer's RandomizedDelaySec=: spreads the servers' runs so they do not all hit a repository at once.
    random_delay: TimeSpan = Field(default="300", alias="randomDelay")
    retention: BackupRetention = BackupRetention()
    # The application server's repository (SFTP) lives on this database server.
    application_repository_on: Literal["db1", "db2"] = Field(default="db1", alias="applicationRepositoryOn")
    # Expected size of what each target backs up (GiB), by target name or by method; for the disk estimate.
    data_gib: dict[str, float] = Field(default_factory=dict, alias="dataGib")
    # Share of the data that changes per day (percent): the deduplicated repository grows by it per retained day.
    daily_change_percent: float = Field(default=5, alias="dailyChangePercent", ge=0, le=100)
    offsite: Optional[OffsiteRepository] = None

    @field_validator("schedules")
    @classmethod
    def _known_methods(cls, schedules: dict[str, str]) -> dict[str, str]:
        for method in schedules:
            if method not in METHODS:
                raise ValueError(f"{method!r} is not a backup method (methods: {', '.join(METHODS)})")
        return schedules

    @field_validator("data_gib")
    @classmethod
    def _positive_sizes(cls, sizes: dict[str, float]) -> dict[str, float]:
        for name, size in sizes.items():
            if size < 0:
                raise ValueError(f"{name}: {size} GiB is negative")
        return sizes

    @model_validator(mode="after")
    def _offsite_keeps_what_the_copy_sends(self) -> Backups:
        # The copy sends every complete snapshot the repository holds that the off-site one lacks: one the
        # off-site retention drops sooner would be sent again after every run.
        if self.offsite is not None and self.offsite.retention is not None:
            for bucket in ("hourly", "daily", "weekly", "monthly"):
                offsite, primary = getattr(self.offsite.retention, bucket), getattr(self.retention, bucket)
                if offsite < primary:
                    raise ValueError(
                        f"offsite.retention.{bucket}: {offsite} keeps fewer than backups.retention.{bucket} ({primary}); "
                        "the copy would send the dropped snapshots again after every run"
                    )
        return self

    def offsite_retention(self) -> BackupRetention:
        return self.offsite.retention if self.offsite is not None and self.offsite.retention is not None else self.retention

    def schedule(self, method: str) -> str:
        return self.schedules.get(method, self.default_schedule)



def key_problems(settings: Backups, sources: Sequence[BackupSource]) -> list[str]:
    """Every key of ``schedules`` and ``dataGib`` that names nothing this stack backs up: a schedule for a
    method no target is taken by, a size for neither such a method nor a target (a typo, or a name copied
    from another stack, would silently keep the default)."""
    methods = sorted({source.method for source in sources})
    targets = sorted({source.name for source in sources})
    problems = [
        f"backups.schedules.{method}: no backup target of this stack is taken by {method} (methods in use: {', '.join(methods)})"
        for method in settings.schedules
        if method not in methods
    ]
    problems += [
        f"backups.dataGib.{name}: {name!r} is neither a backup method in use ({', '.join(methods)}) nor a backup "
        f"target of this stack ({', '.join(targets)})"
        for name in settings.data_gib
        if name not in methods and name not in targets
    ]
    return problems


def repository_server(settings: Backups, server: str, store_server: ServerName) -> ServerName:
    """Where a server's repository lives: the object store, or for the object store's own server a
    server of ``applicationRepositoryOn``."""
    return settings.application_repository_on if server == store_server else store_server


def data_gib(settings: Backups, source: BackupSource) -> float:
    sizes = settings.data_gib
    return sizes.get(source.name, sizes.get(source.method, DEFAULT_DATA_GIB[source.method]))


def retained_days(settings: Backups) -> float:
    """Roughly how many days of changes the retention policy keeps."""
    keep = settings.retention
    return max(keep.hourly / 24, keep.daily, 7 * keep.weekly, 30 * keep.monthly)


def repository_gib(settings: Backups, sources: Sequence[BackupSource]) -> float:
    """Estimated size of a repository: each target's data once, plus its daily change for every retained
    day (restic stores only changed chunks; dumps of an unchanged database deduplicate)."""
    change = settings.daily_change_percent / 100
    return round(sum(data_gib(settings, s) for s in sources) * (1 + change * retained_days(settings)), 1)


def by_server(sources: Sequence[BackupSource]) -> dict[str, list[BackupSource]]:
    grouped: dict[str, list[BackupSource]] = {}
    for source in sources:
        grouped.setdefault(source.server, []).append(source)
    return grouped


def repository_placements(settings: Backups, sources: Sequence[BackupSource], store_server: ServerName) -> list[Placement]:
    """Disk each repository takes on the server that holds it (for the capacity check)."""
    if not settings.enabled:
        return []
    return [
        Placement(repository_server(settings, server, store_server), f"backup repository of {server}", 0, disk_gib=repository_gib(settings, placed))
        for server, placed in by_server(sources).items()
    ]


def object_store(earlier: Sequence[Declaration]) -> Listener:
    """The S3 API the repositories of every server but its own live in."""
    (store,) = [declaration.provides[OBJECT_STORE] for declaration in earlier if OBJECT_STORE in declaration.provides]
    return store


def declare(config: StackConfig, earlier: Sequence[Declaration]) -> Declaration:
    """Every target the services before it declared, on every server that has one."""
    settings = config.backups
    if not settings.enabled:
        return Declaration()
    store = object_store(earlier)
    sources = [source for declaration in earlier for source in declaration.backups]
    openings: list[Opening] = []
    keys: list[str] = []
    for server in by_server(sources):
        prefix = server.replace("-", "_").upper()
        repository = repository_server(settings, server, server_name(store.server))
        if repository == store.server:
            openings.append(Opening(repository, f"{store.label} (backups of {server})", store.port, store.protocol, store.published, (server,)))
            keys += [f"{prefix}_{key}" for key in CREDENTIALS]
        else:
            # Pulumi as for every SSH opening: rows of one port are read as one rule set.
            openings.append(Opening(repository, "SSH", config.servers[repository].ssh_port, "tcp", False, (server, PULUMI)))
            keys += [f"{prefix}_{key}" for key in CREDENTIALS[:2]]
        if settings.offsite is not None:
            keys += [f"{prefix}_OFFSITE_RESTIC_REPOSITORY", f"{prefix}_OFFSITE_RESTIC_PASSWORD"]
    if settings.offsite is not None and settings.offsite.kind == "s3":
        keys = ["OFFSITE_AWS_ACCESS_KEY_ID", "OFFSITE_AWS_SECRET_ACCESS_KEY", *keys]
    return Declaration(
        openings=tuple(openings),
        credentials=(Credentials("backups", tuple(keys), area=PLATFORM),),
        placements=tuple(repository_placements(settings, sources, server_name(store.server))),
    )


SERVICE = Service("backups", declare)
