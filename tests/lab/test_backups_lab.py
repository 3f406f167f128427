"""The restore drill, for real, on lab machines: Postgres data backed up by the program's agent over the
program's SFTP account on another machine, the volume destroyed, restored by ``samarth-restore`` and
compared table by table; the agent installed by the program's installer as the login user through sudo,
its timers under the machine's systemd (lab/backup_drill.py says how the drill plays db2).

Real Debian PostgreSQL 15 in a container built with debootstrap (lab/images.py), real restic (Debian's
0.14), real sshd and systemd. The same run shows that a dump failing half-way leaves no snapshot a
restore would use, and that the timers fire by themselves.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.assembly import backup_sources
from components.services.backups import component as backups
from components.services.storage.settings import API_PORT as MINIO_API_PORT
from lab import docker, ssh
from lab.backup_drill import (
    LAYOUT,
    SERVER,
    TARGET,
    Drill,
    check,
    checksums,
    drill_config,
    fill,
    remove_containers_and_volumes,
    remove_sftp_account,
    sftp_account,
    staging_config,
    uninstall_agent,
    volume_file,
)
from lab.core import NETNS_DIR
from tests.support.lab_fixture import LabSession

ROWS = 20000


@pytest.fixture(scope="module")
def drill(lab_session: LabSession) -> Iterator[Drill]:
    db, repository_host, offsite_host = (lab_session.host(n) for n in ("swarm-node2", "swarm-node3", "swarm-master"))
    try:
        drill = Drill(db=db, repository=sftp_account(db, repository_host), config=drill_config())
        drill.start_postgres()
        drill.first_install = check(drill.install(), "the installer").stderr
        yield drill
    finally:
        # Leave the shared machines as they were for the tests after this module.
        remove_containers_and_volumes(db, TARGET)
        remove_containers_and_volumes(db, "registry")
        uninstall_agent(db)
        for host in (repository_host, offsite_host):
            remove_sftp_account(host)


def system_manager_reloads(drill: Drill) -> int:
    """How often db2's systemd reloaded its units (``daemon-reload``), from its own journal."""
    journal = check(ssh(drill.db, "journalctl --sync; journalctl --no-pager -o cat _PID=1\n", sudo=True), "reading the journal")
    return sum(1 for line in journal.stdout.splitlines() if line.startswith("Reloading"))


def systemctl(drill: Drill, *args: str) -> str:
    return ssh(drill.db, f"systemctl {' '.join(args)}\n", sudo=True).stdout.strip()


def snapshot_count(drill: Drill) -> int:
    return len(json.loads(drill.restic_snapshots()))


def test_the_installer_sets_up_restic_credentials_agent_and_timers(drill: Drill) -> None:
    assert "restic 0.14" in drill.first_install
    assert "repository initialised" in drill.first_install
    config_dir = drill.db.root / LAYOUT.config_dir.lstrip("/")
    assert (oct(config_dir.stat().st_mode & 0o777), config_dir.stat().st_uid) == ("0o700", 0)
    for name in ("password", "repository.env", "ssh_key", "known_hosts"):
        assert (oct((config_dir / name).stat().st_mode & 0o777), (config_dir / name).stat().st_uid) == ("0o600", 0), name
    # The password is in its own file, never in the environment file the agent sources.
    assert (config_dir / "password").read_text().strip() == "drill-repository-password-0123456789"
    assert "drill-repository-password" not in (config_dir / "repository.env").read_text()
    # The repository's host key is pinned: the line the account script printed.
    assert (config_dir / "known_hosts").read_text().strip() == drill.repository.known_hosts.strip()
    timer = (drill.db.root / LAYOUT.unit_dir.lstrip("/") / f"samarth-backup-{TARGET}.timer").read_text()
    assert "OnCalendar=yearly" in timer and f"Unit=samarth-backup@{TARGET}.service" in timer
    assert "Persistent=true" in timer
    for unit in (f"samarth-backup-{TARGET}.timer", "samarth-backup-prune.timer"):
        assert systemctl(drill, "is-enabled", unit) == "enabled", unit
        assert systemctl(drill, "is-active", unit) == "active", unit
    assert systemctl(drill, "list-units", "--failed", "--plain", "--no-legend") == ""
    # Idempotent: a second run changes nothing and asks systemd for no daemon-reload.
    reloads = system_manager_reloads(drill)
    check(drill.install(), "the installer, again")
    assert system_manager_reloads(drill) == reloads


def test_the_installer_refuses_a_login_without_sudo(drill: Drill) -> None:
    """As a user sudo refuses, the installer stops before any change, with what is missing."""
    ssh(drill.db, "useradd -m -s /bin/sh nosudo; install -d -o nosudo -m 700 ~nosudo/.ssh; "
                  f"cp /home/{drill.db.user}/.ssh/authorized_keys ~nosudo/.ssh/; chown nosudo ~nosudo/.ssh/authorized_keys\n", sudo=True)
    try:
        script = backups.install_script(drill.config.backups, SERVER, [drill.source], drill.image, LAYOUT)
        stranger = subprocess.run(
            ["ssh", "-i", str(drill.db.ssh_key_path), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={drill.db.known_hosts}", f"nosudo@{drill.db.address}", script],
            input=f"RESTIC_PASSWORD=x\nRESTIC_REPOSITORY={drill.repository.url('nosudo')}\n", capture_output=True, text=True, timeout=120)
        assert stranger.returncode != 0
        assert "user nosudo needs passwordless sudo on db2 to install the backup agent" in stranger.stderr, stranger.stderr
    finally:
        ssh(drill.db, "userdel -r nosudo 2>/dev/null\n", sudo=True)


def test_backup_destroy_restore_gives_equal_checksums(drill: Drill) -> None:
    fill(drill, ROWS)
    before = checksums(drill)
    assert before["odk_adapter.items"].startswith(f"{ROWS} ")

    check(drill.agent("run", TARGET), "the backup")
    status = check(drill.agent("status"), "the status")
    assert TARGET in status.stdout and "never" not in status.stdout

    # A dump that fails half-way: a database whose table has a corrupt page in its middle. pg_dump
    # streams the rows before it into restic, then fails; the run must leave no snapshot behind.
    drill.sql("postgres", "create database fragile")
    drill.sql("fragile", "create table pages (id int primary key, body text); "
              "insert into pages select g, repeat('p', 400) from generate_series(1, 4000) g; checkpoint;")
    relation = drill.sql("fragile", "select pg_relation_filepath('pages')")
    data_file = volume_file(drill.db, f"{TARGET}-data", relation)
    check(docker(drill.db, "stop", TARGET), "stopping Postgres")
    check(ssh(drill.db, f"tr '\\000' '\\377' </dev/zero | dd of={data_file} bs=8192 seek=50 count=1 conv=notrunc iflag=fullblock 2>/dev/null\n",
              sudo=True), "damaging a page")
    check(docker(drill.db, "start", TARGET), "starting Postgres")
    drill.wait_ready()
    snapshots_before = snapshot_count(drill)
    failed = drill.agent("run", TARGET)
    assert failed.returncode != 0
    assert "fragile.dump" in failed.stderr and "failed" in failed.stderr
    assert snapshot_count(drill) == snapshots_before, "the failed run left snapshots behind"
    status = drill.agent("status")
    assert status.returncode == 0, status.stderr  # the earlier success is recent enough
    assert status.stdout.splitlines()[1].split()[-1] != "-"  # but the failure is shown
    drill.sql("postgres", "drop database fragile")

    drill.destroy_data()
    drill.start_postgres()  # `pulumi up` brings back an empty container
    assert drill.sql("odk_adapter", "select count(*) from pg_tables where tablename = 'items'") == "0"

    checked = check(drill.restore(TARGET), "the restore into a scratch volume")
    assert "restored and checked" in checked.stdout
    assert drill.sql("odk_adapter", "select count(*) from pg_tables where tablename = 'items'") == "0", "live data was touched"

    check(drill.restore(TARGET, "--replace-live"), "the restore into the live volume")
    drill.wait_ready()
    assert checksums(drill) == before
    assert drill.sql("postgres", "select count(*) from pg_roles where rolname = 'reporter'") == "1"
    assert drill.sql("odk_adapter", "select has_table_privilege('reporter', 'items', 'select')") == "t"
    # The data the restore replaced is kept, not deleted.
    assert docker(drill.db, "volume", "ls", "-q", "--filter", f"name={TARGET}-data-before-").stdout.strip()


def test_the_drill_server_is_the_programs_own_target() -> None:
    (source,) = [s for s in backup_sources(staging_config()) if s.name == TARGET]
    assert source.server == SERVER and source.method == "postgres"


def test_files_backup_restores_a_volume_byte_for_byte(drill: Drill) -> None:
    """The registry's storage (the `files` method): back up the volume's directory, lose the volume,
    restore into a fresh one, then into the live one; every file's sha256 is the same."""
    (registry,) = [s for s in backup_sources(drill.config) if s.name == "registry"]
    files = Drill(db=drill.db, repository=drill.repository, config=drill.config, name="files")
    image = drill.image

    def start_registry() -> None:
        check(docker(drill.db, "volume", "create", "registry-data"), "creating the volume")
        check(docker(drill.db, "run", "-d", "--name", registry.container, "-v", f"registry-data:{registry.detail}",
                     image, "sleep", "infinity", timeout=300), "starting the stand-in registry")

    def digests() -> str:
        return check(docker(drill.db, "exec", registry.container, "sh", "-c",
                            f"cd {registry.detail} && find . -type f | sort | xargs -r sha256sum"), "hashing").stdout

    try:
        start_registry()
        check(docker(drill.db, "exec", registry.container, "sh", "-c",
                     f"mkdir -p {registry.detail}/docker/registry/v2/blobs/sha256/ab && cd {registry.detail}/docker/registry/v2/blobs/sha256/ab && "
                     "for i in 1 2 3 4 5; do head -c 1048576 /dev/urandom >blob$i; done && ln -s blob1 link"), "writing blobs")
        before = digests()
        assert len(before.splitlines()) == 5
        check(files.install("application", [registry]), "the installer")
        check(files.agent("run", registry.name), "the files backup")
        check(docker(drill.db, "rm", "-f", registry.container), "removing the container")
        check(docker(drill.db, "volume", "rm", "registry-data"), "removing the volume")
        start_registry()
        restored = check(files.restore(registry.name), "the restore into a fresh volume")
        assert "restored and verified 5 files" in restored.stdout
        assert digests() == "", "live data was touched"
        check(files.restore(registry.name, "--replace-live"), "the restore into the live volume")
        assert digests() == before
    finally:
        remove_containers_and_volumes(drill.db, registry.container)
        check(drill.install(), "the installer, back to db2's own targets")


def damage(drill: Drill) -> None:
    """Lose rows, a table and a database of the live container (quicker than a new, empty cluster)."""
    drill.sql("odk_adapter", "drop table events; delete from items where id % 2 = 0")
    drill.sql("postgres", "drop database reports")


def test_offsite_copy_holds_each_complete_run_and_restores_equal(drill: Drill, lab_session: LabSession) -> None:
    """backups.offsite over SFTP on a third machine (an account made as the repository's is): the
    installer creates it with the repository's chunker parameters, each complete run is copied there
    (restic copy through rclone), a failed copy is recorded apart from the backup, and a restore from the
    off-site repository gives equal checksums."""
    offsite_account = sftp_account(drill.db, lab_session.host("swarm-master"))
    site = Drill(db=drill.db, repository=drill.repository, config=drill.config, name="offsite", offsite_account=offsite_account)
    try:
        installed = check(site.install(), "the installer with an off-site repository").stderr
        assert "rclone v1." in installed
        configs = [json.loads(site.restic("cat", "config", offsite=offsite)) for offsite in (False, True)]
        assert configs[0]["id"] != configs[1]["id"]
        assert configs[0]["chunker_polynomial"] == configs[1]["chunker_polynomial"], "copies would not deduplicate"

        if drill.sql("odk_adapter", "select count(*) from pg_tables where tablename = 'items'") == "0":
            fill(drill, 2000)
        before = checksums(drill)
        done = check(site.agent("run", TARGET), "a backup with its off-site copy")
        assert "copied off-site" in done.stdout
        assert "NOTICE" not in done.stderr, done.stderr  # rclone runs on its variables alone, quietly
        primary = [s for s in json.loads(site.restic_snapshots()) if "complete" in s["tags"]]
        offsite = json.loads(site.offsite_snapshots())
        assert len(primary) >= 3  # globals.sql and a dump per database
        same = ("time", "tree", "paths", "hostname", "tags")
        assert sorted([s[k] for k in same] for s in offsite) == sorted([s[k] for k in same] for s in primary)
        status = check(site.agent("status"), "the status").stdout.splitlines()
        assert "off-site" in status[0] and "never" not in status[1] and status[1].endswith(", -")

        # The off-site host loses the repository: the run is still a good backup here, the copy is a recorded failure.
        repository = offsite_account.host.root / offsite_account.path(site.name).lstrip("/")
        repository.rename(repository.with_name("away"))
        try:
            failed = site.agent("run", TARGET)
        finally:
            repository.with_name("away").rename(repository)
        assert failed.returncode != 0 and "copy to the off-site repository failed" in failed.stderr
        assert "complete" in failed.stdout
        # Kept here: the new run (the hourly retention keeps one run per hour, so it replaced the first).
        runs = {tag for s in json.loads(site.restic_snapshots()) if "complete" in s["tags"] for tag in s["tags"] if tag.startswith("run-")}
        assert len(runs) == 1 and runs != {tag for tag in primary[0]["tags"] if tag.startswith("run-")}
        assert (drill.db.root / LAYOUT.state_dir.lstrip("/") / "status" / f"{TARGET}.offsite-failure").exists()
        status = site.agent("status").stdout.splitlines()
        assert not status[1].endswith(", -"), "the off-site failure is shown"
        assert len(json.loads(site.offsite_snapshots())) == len(offsite)

        damage(drill)
        check(site.restore("--offsite", TARGET, "--replace-live"), "the restore from the off-site repository")
        drill.wait_ready()
        assert checksums(drill) == before
    finally:
        check(drill.install(), "the installer, back to db2's own repository")


def test_s3_repository_through_the_rendered_repository_env(drill: Drill, lab_session: LabSession) -> None:
    """db2's repository as the program makes it: `s3:http://<application>:9000/samarth-backups/db2` with
    AWS_* keys in repository.env, written by the installer from stdin. S3 is served by moto (moto_server,
    an S3 stand-in run from this machine in the application machine's network namespace) on its address,
    as MinIO is on the application server. moto does not enforce MinIO's per-user prefix policy
    (docs/backups.md says where that is checked)."""
    application = lab_session.host("application")
    moto = subprocess.Popen(
        ["nsenter", f"--net={NETNS_DIR / application.namespace}", str(Path(sys.executable).parent / "moto_server"),
         "-H", application.address, "-p", str(MINIO_API_PORT)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        bucket = f"http://{application.address}:{MINIO_API_PORT}/{backups.BUCKET}"
        deadline = time.monotonic() + 30
        while True:  # the bucket, as the program's MinIO provider makes it (moto takes unsigned requests)
            try:
                urllib.request.urlopen(urllib.request.Request(bucket, method="PUT"), timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline or moto.poll() is not None:
                    raise
                time.sleep(0.5)
        values = {
            "RESTIC_REPOSITORY": backups.s3_repository_url(f"{application.address}:{MINIO_API_PORT}", SERVER),
            "AWS_ACCESS_KEY_ID": "samarth-backups-db2",
            "AWS_SECRET_ACCESS_KEY": "drill-s3-secret-key-0123456789",
        }
        site = Drill(db=drill.db, repository=drill.repository, config=drill.config, repository_values=values)
        assert "repository initialised" in check(site.install(), "the installer with an S3 repository").stderr
        env = (drill.db.root / LAYOUT.config_dir.lstrip("/") / "repository.env").read_text()
        assert f"RESTIC_REPOSITORY=s3:http://{application.address}:{MINIO_API_PORT}/samarth-backups/db2\n" in env
        assert "AWS_SECRET_ACCESS_KEY=drill-s3-secret-key-0123456789\n" in env
        if drill.sql("odk_adapter", "select count(*) from pg_tables where tablename = 'items'") == "0":
            fill(drill, 2000)
        before = checksums(drill)
        check(site.agent("run", TARGET), "a backup into S3")
        with urllib.request.urlopen(f"{bucket}?list-type=2", timeout=10) as listing:
            keys = re.findall(r"<Key>([^<]+)</Key>", listing.read().decode())
        assert "db2/config" in keys and any(k.startswith("db2/snapshots/") for k in keys)
        assert all(k.startswith("db2/") for k in keys), "the repository stays in its prefix"
        damage(drill)
        check(site.restore(TARGET, "--replace-live"), "the restore from S3")
        drill.wait_ready()
        assert checksums(drill) == before
    finally:
        moto.terminate()
        moto.wait(timeout=30)
        check(drill.install(), "the installer, back to db2's own repository")


def test_the_timers_start_the_backups_by_themselves(drill: Drill) -> None:
    """With a schedule due every minute (as the lab stack sets it) and no random delay, systemd starts
    the backup of the target by itself: a complete run appears and `samarth-backup status` shows it;
    nothing is left failed."""
    every_minute = Drill(db=drill.db, repository=drill.repository, config=drill_config("minutely"), name=drill.name)
    service = f"samarth-backup@{TARGET}.service"
    before = {tag for s in json.loads(drill.restic_snapshots()) if "complete" in s["tags"] for tag in s["tags"] if tag.startswith("run-")}
    try:
        check(every_minute.install(), "the installer with every-minute timers")
        assert "OnCalendar=minutely" in (drill.db.root / LAYOUT.unit_dir.lstrip("/") / f"samarth-backup-{TARGET}.timer").read_text()
        deadline = time.monotonic() + 150
        while systemctl(drill, "show", "--property=Result", "--value", service) != "success" or \
                systemctl(drill, "show", "--property=ExecMainExitTimestampMonotonic", "--value", service) in ("", "0"):
            assert time.monotonic() < deadline, f"the timer did not run {service}: " + systemctl(drill, "status", "--no-pager", service)
            time.sleep(2)
        trigger = systemctl(drill, "show", "--property=LastTriggerUSec", "--value", f"samarth-backup-{TARGET}.timer")
        assert trigger not in ("", "n/a"), "the run was not the timer's"
        after = {tag for s in json.loads(drill.restic_snapshots()) if "complete" in s["tags"] for tag in s["tags"] if tag.startswith("run-")}
        assert after - before, "no complete run from the timer"
        assert systemctl(drill, "list-units", "--failed", "--plain", "--no-legend") == ""
        assert check(drill.agent("status"), "the status").stdout.splitlines()[1].split()[1] == "minutely"
    finally:
        check(drill.install(), "the installer, back to the quiet schedule")
