"""The backup and restore drills on lab machines, shared by tests/lab/test_backups_lab.py,
tests/lab/test_restores_lab.py and benchmarks/backup_restore.py.

One machine plays db2 and runs ``postgres-odk-adapter`` (Debian's PostgreSQL 15 in an image built with
debootstrap, see lab/images.py) on a volume named as in production. Everything else is the program's
own, as ``pulumi up`` runs it, as the login user ``samarth-devops`` through sudo:

- the repository is an SFTP account on another machine, made by ``backup-sftp-repository.sh`` for the
  key ``backup-ssh-key.sh`` made on db2, reached with ``backups.sftp_command`` and the pinned host key;
- the agent is installed by ``backups.install_script`` in the servers' layout (``backups.LAYOUT``: the
  root-only credentials in /etc/samarth/backups, ``samarth-backup`` in /usr/local/sbin, the units in
  /etc/systemd/system, enabled under the machine's systemd), the credentials on the command's stdin;
- the agent runs as root (``sudo samarth-backup run``), as its systemd service runs it.

Each drill (``Drill.name``) has its own repository, a directory of db2's in the SFTP account, so the
drills' snapshots do not meet. Schedules are ``QUIET_SCHEDULE`` unless a test asks for others: no timer
fires in the middle of a drill.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

from components.assembly import backup_sources
from components.config import StackConfig
from components.deployment import load_deployment
from components.platform.host.settings import Server
from components.services.backups import component as backups
from components.services.backups.settings import OffsiteRepository
from components.shared.service import BackupSource
from components.shared.shell import render
from lab import LabHost, docker, run_command, ssh
from lab.images import import_services
from tools.offline import PROJECT, project_defaults, read_stack_values, stack_file

SERVER = "db2"
TARGET = "postgres-odk-adapter"
PASSWORD = "drill-repository-password-0123456789"
OFFSITE_PASSWORD = "drill-offsite-password-9876543210"
# Once a year, at the new year: the drills start every run themselves.
QUIET_SCHEDULE = "yearly"
# Where the drills keep their own files on db2 (root-only: the off-site password the checks read).
WORK = "/var/tmp/backup-drill"
LAYOUT = backups.LAYOUT


def staging_config() -> StackConfig:
    values, secure = read_stack_values(stack_file("staging"))
    for key, default in project_defaults().items():
        values.setdefault(f"{PROJECT}:{key}", default if isinstance(default, str) else json.dumps(default))
    return load_deployment(PROJECT, "staging", values, secure).config


def drill_config(schedule: str = QUIET_SCHEDULE, random_delay: str = "0") -> StackConfig:
    """Staging's config with every backup on ``schedule``, each timer delayed by up to ``random_delay``."""
    config = staging_config()
    quiet = config.backups.model_copy(update={
        "schedules": dict.fromkeys(config.backups.schedules, schedule),
        "default_schedule": schedule,
        "random_delay": random_delay,
    })
    return config.model_copy(update={"backups": quiet})


def check(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        raise AssertionError(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def server_spec(host: LabHost) -> Server:
    """A lab machine as a stack declares a server (its private address, sshd on 22)."""
    return Server.model_validate({"privateIp": host.address, "sshPort": 22, "memoryMib": 1024, "cpus": 1})


@dataclass(frozen=True)
class SftpAccount:
    """The SFTP account ``backup-sftp-repository.sh`` made on ``host`` for db2's key, as the program
    makes the application server's repository on a database server."""

    host: LabHost
    spec: Server
    known_hosts: str  # the script's output: the host's pinned key as a known_hosts line

    def url(self, directory: str) -> str:
        return f"{backups.sftp_repository_url(self.spec, SERVER)}/{directory}"

    def path(self, directory: str) -> str:
        """Where ``directory`` of db2's repositories is on the account's machine."""
        return f"{backups.SFTP_ROOT}/{SERVER}/{directory}"

    def credentials(self, directory: str) -> dict[str, str]:
        return {
            "RESTIC_REPOSITORY": self.url(directory),
            "SAMARTH_SFTP_COMMAND": backups.sftp_command(self.spec),
            "known_hosts": self.known_hosts,
        }


def backup_key(db: LabHost) -> str:
    """db2's backup SSH key (made once, root-only), its public half as the program reads it."""
    script = render("backup-ssh-key.sh", f"backup-ssh-key[{SERVER}]", SERVER=SERVER, CONFIG_DIR=LAYOUT.config_dir)
    return check(run_command(db, script, timeout=600), "backup-ssh-key.sh").stdout


def sftp_account(db: LabHost, host: LabHost) -> SftpAccount:
    """The SFTP account for db2's key on ``host`` (idempotent, as on every ``pulumi up``)."""
    spec = server_spec(host)
    script = backups.sftp_repository_script(host.name, spec, SERVER, db.address, backup_key(db))
    return SftpAccount(host, spec, check(run_command(host, script, timeout=600), "backup-sftp-repository.sh").stdout)


def remove_sftp_account(host: LabHost) -> None:
    """What a machine was before ``sftp_account``: no account, no repositories, sshd as it was."""
    ssh(host, f"userdel {backups.SFTP_USER}; rm -rf {backups.SFTP_ROOT} "
              f"{backups.SSHD_DROP_IN_DIR}/samarth-backup-{backups.SFTP_USER}.conf; systemctl reload ssh\n", sudo=True)


def uninstall_agent(db: LabHost) -> None:
    """What db2 was before the installer: no timers, units, agent, credentials or state."""
    units = f"{LAYOUT.unit_dir}/samarth-backup*"
    ssh(db, f"systemctl disable --now $(cd {LAYOUT.unit_dir} && ls samarth-backup*.timer 2>/dev/null) 2>/dev/null; "
            f"rm -rf {units} {LAYOUT.config_dir} {LAYOUT.state_dir} {LAYOUT.sbin_dir}/samarth-backup "
            f"{LAYOUT.sbin_dir}/samarth-restore {LAYOUT.restic} {LAYOUT.rclone} {WORK}; "
            "systemctl daemon-reload; systemctl reset-failed\n", sudo=True)


@dataclass
class Drill:
    db: LabHost
    repository: SftpAccount
    config: StackConfig
    # The drill's repository: this directory of db2's in the SFTP account.
    name: str = "drill"
    # An SFTP account serving the off-site repository (backups.offsite), or none.
    offsite_account: Optional[SftpAccount] = None
    # The repository's settings in place of the SFTP account (RESTIC_REPOSITORY, AWS_*...).
    repository_values: Optional[Mapping[str, str]] = None
    # What the installer printed on its first run (the test module's fixture installs).
    first_install: str = field(default="", compare=False)

    @property
    def offsite(self) -> Optional[OffsiteRepository]:
        """backups.offsite as a stack would declare it for the off-site account (validated as config is)."""
        if self.offsite_account is None:
            return None
        return OffsiteRepository.model_validate({
            "repository": f"sftp:{backups.SFTP_USER}@{self.offsite_account.host.address}:/{SERVER}/{self.name}",
            "hostKey": self.offsite_account.host.host_key,
        })

    @property
    def source(self) -> BackupSource:
        (source,) = [s for s in backup_sources(self.config) if s.name == TARGET]
        return source

    @property
    def image(self) -> str:
        return import_services(self.db)

    def sql(self, database: str, query: str) -> str:
        result = subprocess.run(
            ["docker", "-H", self.db.docker_host, "exec", "-i", TARGET, "psql", "-U", "odk_adapter", "-d", database,
             "-AtXq", "-v", "ON_ERROR_STOP=1"],
            input=query, capture_output=True, text=True, timeout=1800,
        )
        return check(result, f"psql {database}").stdout.strip()

    def start_postgres(self) -> None:
        """The container and volume as ``pulumi up`` makes them: a fresh volume initialises an empty cluster."""
        volume = f"{TARGET}-data"
        check(docker(self.db, "volume", "create", volume), "creating the volume")
        check(
            docker(self.db, "run", "-d", "--name", TARGET, "--restart", "unless-stopped",
                   "-e", "POSTGRES_USER=odk_adapter", "-e", "POSTGRES_DB=odk_adapter",
                   "-v", f"{volume}:{self.source.detail}", self.image, timeout=300),
            "starting Postgres",
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while docker(self.db, "exec", TARGET, "pg_isready", "-q", "-U", "odk_adapter", "-d", "postgres").returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"Postgres did not start: {docker(self.db, 'logs', TARGET).stderr}")
            time.sleep(0.5)

    def destroy_data(self) -> None:
        """What a lost disk does: the container and its volume are gone."""
        check(docker(self.db, "rm", "-f", TARGET), "removing the container")
        check(docker(self.db, "volume", "rm", f"{TARGET}-data"), "removing the volume")

    def install(self, server: str = SERVER, sources: Sequence[BackupSource] = ()) -> subprocess.CompletedProcess[str]:
        """The program's installer as ``pulumi up`` runs it: the script as the SSH command of the login
        user, the credentials on its stdin."""
        offsite = self.offsite
        config = self.config
        if offsite is not None:
            config = config.model_copy(update={"backups": config.backups.model_copy(update={"offsite": offsite})})
        script = backups.install_script(
            config.backups, server, list(sources) or [self.source], self.image, LAYOUT,
            rclone_image=self.image if offsite is not None else "",
        )
        values: dict[str, str] = {"RESTIC_PASSWORD": PASSWORD,
                                  **(self.repository_values or self.repository.credentials(self.name))}
        if offsite is not None:
            values |= {
                "offsite_password": OFFSITE_PASSWORD,
                "offsite_known_hosts": backups.offsite_known_hosts(offsite),
                **backups.offsite_settings(offsite, server, LAYOUT),
            }
        return run_command(self.db, script, timeout=600, stdin=backups.credential_text(values))

    def agent(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``samarth-backup ARGS`` as root, as its systemd service and the runbook run it."""
        return ssh(self.db, shlex.join([f"{LAYOUT.sbin_dir}/samarth-backup", *args]) + "\n", timeout=1800, sudo=True)

    def restore(self, *args: str) -> subprocess.CompletedProcess[str]:
        return ssh(self.db, shlex.join([f"{LAYOUT.sbin_dir}/samarth-restore", *args]) + "\n", timeout=1800, sudo=True)

    def restic_snapshots(self) -> str:
        """Every snapshot in the repository, complete or not (restic's own JSON)."""
        return self.restic("snapshots", "--json", "--no-lock")

    def offsite_snapshots(self) -> str:
        """Every snapshot in the off-site repository."""
        return self.restic("snapshots", "--json", "--no-lock", offsite=True)

    def restic(self, *args: str, offsite: bool = False) -> str:
        """restic's output for ``args`` on the repository with the installed credentials, or on the
        off-site one read over plain SFTP with db2's key (not the agent's way through rclone)."""
        config = LAYOUT.config_dir
        if not offsite:
            command = (f". {config}/repository.env; export RESTIC_REPOSITORY; RESTIC_PASSWORD_FILE={config}/password "
                       f"{LAYOUT.restic} -o sftp.command=\"$SAMARTH_SFTP_COMMAND\" {shlex.join(args)}\n")
        else:
            assert self.offsite is not None and self.offsite_account is not None
            password = f"{WORK}/offsite-password"
            self.db.write_file(password, OFFSITE_PASSWORD + "\n", mode=0o600)
            sftp_command = backups.sftp_command(self.offsite_account.spec).replace(
                f"{config}/known_hosts", f"{config}/offsite_known_hosts")
            command = (f"RESTIC_PASSWORD_FILE={password} {LAYOUT.restic} -r {backups.offsite_repository(self.offsite, SERVER)} "
                       f"-o sftp.command={shlex.quote(sftp_command)} {shlex.join(args)}\n")
        return check(ssh(self.db, command, sudo=True), f"restic {' '.join(args)}").stdout

    def repository_bytes(self) -> int:
        return _bytes(self.repository.host, self.repository.path(self.name))

    def offsite_bytes(self) -> int:
        assert self.offsite_account is not None
        return _bytes(self.offsite_account.host, f"{self.offsite_account.path(self.name)}/{SERVER}")


def _bytes(host: LabHost, path: str) -> int:
    return sum(f.stat().st_size for f in (host.root / path.lstrip("/")).rglob("*") if f.is_file())


def volume_file(host: LabHost, volume: str, path: str) -> str:
    """A file of a Docker volume as the machine names it (volumes live on the machine's own disk)."""
    mountpoint = check(docker(host, "volume", "inspect", "--format", "{{.Mountpoint}}", volume), "inspecting the volume").stdout.strip()
    return f"{mountpoint}/{path}"


def fill(drill: Drill, rows: int) -> None:
    """Two databases, a role, tables with keys and a foreign key, ``rows`` rows in the big one."""
    drill.sql("odk_adapter", f"""
create role reporter nologin;
create table items (id bigint primary key, name text not null, payload text, created timestamptz not null);
insert into items select g, 'item ' || g, md5(g::text) || repeat(chr(65 + g % 26), 120), timestamptz '2026-01-01' + g * interval '1 second'
  from generate_series(1, {rows}) g;
create table events (id bigserial primary key, item_id bigint not null references items, kind text);
insert into events (item_id, kind) select (g % {rows}) + 1, case when g % 3 = 0 then 'sent' else 'queued' end from generate_series(1, {rows // 4}) g;
grant select on items to reporter;
create database reports;
""")
    drill.sql("reports", "create table daily (day date primary key, total bigint); "
              "insert into daily select d::date, extract(doy from d) from generate_series(date '2026-01-01', date '2026-12-31', interval '1 day') d;")


TABLES = {"odk_adapter": ("items", "events"), "reports": ("daily",)}


def checksums(drill: Drill) -> dict[str, str]:
    """Row count and an md5 over every row, in key order, per table."""
    return {
        f"{database}.{table}": drill.sql(database, f"select count(*) || ' ' || md5(string_agg(t::text, '|' order by t.{'day' if table == 'daily' else 'id'})) from {table} t")
        for database, tables in TABLES.items()
        for table in tables
    }


def remove_containers_and_volumes(host: LabHost, container: str) -> None:
    """A drill's live container, its scratch containers and every volume named after it."""
    for name in [container, *docker(host, "ps", "-aq", "--filter", f"name={container}-restore").stdout.split()]:
        docker(host, "rm", "-f", name)
    for volume in docker(host, "volume", "ls", "-q", "--filter", f"name={container}").stdout.split():
        docker(host, "volume", "rm", volume)
