"""The restore drill on lab hosts, shared by tests/test_backups_lab.py and benchmarks/backup_restore.py.

A lab host plays db2 and runs ``postgres-odk-adapter`` (Debian's PostgreSQL 15 in an image built with
debootstrap, see lab/images.py) on a volume named as in production; another lab host serves the restic
repository over SFTP through its sshd. The backup agent is installed by the program's own installer
(``components.backups.install_script``) with the program's own target list, and driven as its systemd
units would drive it. Lab hosts have no systemd: a stand-in ``systemctl`` on the installer's PATH
records what the installer asks of it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from components import backups
from components.config import OffsiteRepository, StackConfig
from components.deployment import load_deployment
from lab import LabHost, docker, ssh, ssh_command
from lab.images import import_services
from tools.offline import PROJECT, project_defaults, read_stack_values, stack_file

SERVER = "db2"
TARGET = "postgres-odk-adapter"
PASSWORD = "drill-repository-password-0123456789"
OFFSITE_PASSWORD = "drill-offsite-password-9876543210"


def staging_config() -> StackConfig:
    values, secure = read_stack_values(stack_file("staging"))
    for key, default in project_defaults().items():
        values.setdefault(f"{PROJECT}:{key}", default if isinstance(default, str) else json.dumps(default))
    return load_deployment(PROJECT, "staging", values, secure).config


def _ssh_stdin(host: LabHost, script: str, stdin: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (a file on the shared filesystem) with ``stdin`` free for the credentials, as the
    program's remote command does."""
    return subprocess.run(ssh_command(host, "sh", script), input=stdin, capture_output=True, text=True, timeout=timeout)


@dataclass
class Drill:
    db: LabHost
    repository_host: LabHost
    root: Path
    config: StackConfig
    # What the installer printed on its first run (the test module's fixture installs).
    first_install: str = ""
    # A lab host serving the off-site repository over SFTP (backups.offsite), or none.
    offsite_host: Optional[LabHost] = None
    # The repository's settings in place of SFTP on repository_host (RESTIC_REPOSITORY, AWS_*...).
    repository_values: Optional[dict[str, str]] = None

    @property
    def offsite(self) -> Optional[OffsiteRepository]:
        """backups.offsite as a stack would declare it for the off-site lab host (validated as config is)."""
        if self.offsite_host is None:
            return None
        return OffsiteRepository.model_validate(
            {"repository": f"sftp:root@{self.offsite_host.address}:{self.root}/offsite", "hostKey": self.offsite_host.host_key}
        )

    @property
    def layout(self) -> backups.Layout:
        return backups.Layout(
            config_dir=str(self.root / "etc"),
            state_dir=str(self.root / "state"),
            restic=str(self.root / "bin" / "restic"),
            rclone=str(self.root / "bin" / "rclone"),
            sbin_dir=str(self.root / "sbin"),
            unit_dir=str(self.root / "units"),
        )

    @property
    def source(self) -> backups.Source:
        (source,) = [s for s in backups.database_sources(self.config) if s.name == TARGET]
        return source

    @property
    def image(self) -> str:
        return import_services(self.db)

    def sql(self, database: str, query: str) -> str:
        return _psql(self.db, TARGET, database, query)

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

    def install(self, server: str = SERVER, sources: Sequence[backups.Source] = ()) -> subprocess.CompletedProcess[str]:
        """The program's installer, with the credentials on stdin as the program sends them."""
        stub = self.root / "systemd-stub"
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "systemctl").write_text(f'#!/bin/sh\necho "$*" >>{self.root}/systemctl.log\n')
        (stub / "systemctl").chmod(0o755)
        for directory in ("sbin", "units"):
            (self.root / directory).mkdir(parents=True, exist_ok=True)
        script = self.root / "install.sh"
        offsite = self.offsite
        config = self.config
        if offsite is not None:
            config = config.model_copy(update={"backups": config.backups.model_copy(update={"offsite": offsite})})
        script.write_text(
            f"PATH={stub}:$PATH\n"
            + backups.install_script(
                config, server, list(sources) or [self.source], self.image, self.layout,
                rclone_image=self.image if offsite is not None else "",
            )
        )
        repository = self.repository_host
        sftp_command = (
            f"ssh -i {repository.ssh_key_path} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
            f"-o UserKnownHostsFile={repository.known_hosts} root@{repository.address} -s sftp"
        )
        values = {"RESTIC_PASSWORD": PASSWORD, **(self.repository_values or {
            "RESTIC_REPOSITORY": f"sftp:root@{repository.address}:{self.root}/repository",
            "SAMARTH_SFTP_COMMAND": sftp_command,
        })}
        if offsite is not None:
            # The server's own key, installed on the off-site host by the operator: here the lab's key.
            (self.root / "etc").mkdir(mode=0o700, parents=True, exist_ok=True)
            key = self.root / "etc" / "ssh_key"
            key.write_bytes(Path(self.db.ssh_key_path).read_bytes())
            key.chmod(0o600)
            values |= {
                "offsite_password": OFFSITE_PASSWORD,
                "offsite_known_hosts": backups.offsite_known_hosts(offsite),
                **backups.offsite_settings(offsite, server, self.layout),
            }
        credentials = backups.credential_text(values)
        return _ssh_stdin(self.db, str(script), credentials, 600)

    def agent(self, *args: str) -> subprocess.CompletedProcess[str]:
        return ssh(self.db, f"{self.layout.sbin_dir}/samarth-backup {' '.join(args)}\n", timeout=1800)

    def restore(self, *args: str) -> subprocess.CompletedProcess[str]:
        return ssh(self.db, f"{self.layout.sbin_dir}/samarth-restore {' '.join(args)}\n", timeout=1800)

    def restic_snapshots(self) -> str:
        """Every snapshot in the repository, complete or not (restic's own JSON)."""
        return self.restic("snapshots", "--json", "--no-lock")

    def offsite_snapshots(self) -> str:
        """Every snapshot in the off-site repository."""
        return self.restic("snapshots", "--json", "--no-lock", offsite=True)

    def restic(self, *args: str, offsite: bool = False) -> str:
        """restic's output for ``args`` on the repository, or on the off-site one read over plain SFTP
        (not the agent's way through rclone)."""
        if not offsite:
            env = f"RESTIC_PASSWORD_FILE={self.layout.config_dir}/password"
            command = (f". {self.layout.config_dir}/repository.env; export RESTIC_REPOSITORY; {env} "
                       f"{self.layout.restic} -o sftp.command=\"$SAMARTH_SFTP_COMMAND\" {' '.join(args)}\n")
        else:
            assert self.offsite is not None and self.offsite_host is not None
            password = self.root / "offsite-password-check"
            password.write_text(OFFSITE_PASSWORD + "\n")
            sftp_command = (
                f"ssh -i {self.offsite_host.ssh_key_path} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
                f"-o UserKnownHostsFile={self.offsite_host.known_hosts} root@{self.offsite_host.address} -s sftp"
            )
            command = (f"RESTIC_PASSWORD_FILE={password} {self.layout.restic} -r '{backups.offsite_repository(self.offsite, SERVER)}' "
                       f"-o sftp.command='{sftp_command}' {' '.join(args)}\n")
        return check(ssh(self.db, command), f"restic {' '.join(args)}").stdout

    def repository_bytes(self) -> int:
        return sum(f.stat().st_size for f in (self.root / "repository").rglob("*") if f.is_file())


def _psql(host: LabHost, container: str, database: str, query: str) -> str:
    result = subprocess.run(
        ["docker", "-H", host.docker_host, "exec", "-i", container, "psql", "-U", "odk_adapter", "-d", database,
         "-AtXq", "-v", "ON_ERROR_STOP=1"],
        input=query, capture_output=True, text=True, timeout=1800,
    )
    check(result, f"psql {database}")
    return result.stdout.strip()


def check(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        raise AssertionError(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


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
