"""Prints how long the program's backup and restore of a Postgres target take, and the repository size,
for a data set of stated size: the lab drill of lab/backup_drill.py (Debian's PostgreSQL 15, restic 0.14
over the program's SFTP account on another lab machine) with ``rows`` rows in the big table and a quarter as many in the other.
Then the same for a Redis target (lab/redis_drill.py, Debian's Redis 7.0) with ``--redis-keys`` strings
(plus a tenth as many each of hashes, lists, sets and sorted sets) in one database and a quarter as many
in another.

Run as root: `sudo venv/bin/python -m benchmarks.backup_restore [rows] [--redis-keys N]` (defaults
1,000,000 rows and 200,000 keys).
Figures: the database size; the first backup; a second backup with unchanged data (deduplicated); a
restore into a scratch volume with its checks; a restore with --replace-live (the recovery time); the
repository size after one and two runs. For Redis: the key count and memory, backup, repository, and
the recovery time (restore with --replace-live until the live Redis has loaded every key). With
``--offsite``, a third lab machine serves an off-site repository over SFTP (backups.offsite): the Postgres
backups include the copy, and the figures add the off-site repository's size and a restore from it
with --replace-live.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from components.assembly import backup_sources
from lab import redis_drill, temporary_lab
from lab.backup_drill import SERVER, TARGET, Drill, check, checksums, drill_config, fill, sftp_account

from .report import figure


def timed(what: str, action: Callable[[], object], note: str) -> None:
    started = time.monotonic()
    action()
    figure(what, time.monotonic() - started, "s", note)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backup_restore", description=__doc__.split("\n")[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000, help="rows in the big table (default 1000000)")
    parser.add_argument("--redis-keys", type=int, default=200_000, help="strings in Redis' first database (default 200000)")
    parser.add_argument("--offsite", action="store_true", help="copy every Postgres run to an off-site repository on a third lab host")
    arguments = parser.parse_args()
    rows, redis_keys = arguments.rows, arguments.redis_keys
    if os.geteuid() != 0:
        print("run as root (the lab's machines need it)", file=sys.stderr)
        return 2
    names = ["db2", "repository", *(["offsite"] if arguments.offsite else [])]
    with temporary_lab(names, "b") as (_, hosts), tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        db = hosts["db2"]
        drill = Drill(db=db, repository=sftp_account(db, hosts["repository"]), config=drill_config(),
                      offsite_account=sftp_account(db, hosts["offsite"]) if arguments.offsite else None)
        drill.start_postgres()
        check(drill.install(), "installing the agent")
        fill(drill, rows)
        before = checksums(drill)
        size = int(drill.sql("postgres", "select sum(pg_database_size(datname)) from pg_database"))
        data = f"{rows} + {rows // 4} rows" + (", with the off-site copy" if arguments.offsite else "")
        figure("Postgres data set (databases on disk)", size / 2**20, "MiB", data)
        timed("backup, first run", lambda: check(drill.agent("run", TARGET), "backup"), data)
        figure("repository after one run", drill.repository_bytes() / 2**20, "MiB", data)
        timed("backup, second run (data unchanged)", lambda: check(drill.agent("run", TARGET), "backup"), data)
        figure("repository after two runs", drill.repository_bytes() / 2**20, "MiB", data)
        if arguments.offsite:
            figure("off-site repository after two runs", drill.offsite_bytes() / 2**20, "MiB", data)
        drill.destroy_data()
        drill.start_postgres()
        timed("restore into a scratch volume, checked", lambda: check(drill.restore(TARGET), "restore"), data)
        timed("restore with --replace-live (recovery time)",
              lambda: check(drill.restore(TARGET, "--replace-live"), "restore"), data)
        drill.wait_ready()
        if checksums(drill) != before:
            print("checksums after the restore DIFFER", file=sys.stderr)
            return 1
        if arguments.offsite:
            drill.sql("odk_adapter", "drop table events")
            timed("restore from the off-site repository with --replace-live",
                  lambda: check(drill.restore("--offsite", TARGET, "--replace-live"), "restore"), data)
            drill.wait_ready()
            if checksums(drill) != before:
                print("checksums after the off-site restore DIFFER", file=sys.stderr)
                return 1
        print("checksums after the restore: equal")
        if not redis(drill, root, redis_keys):
            return 1
    return 0


def redis(postgres: Drill, root: Path, keys: int) -> bool:
    """The Redis drill of tests/lab/test_restores_lab.py at a stated size; False when the digests differ."""
    (source,) = [s for s in backup_sources(postgres.config) if s.name == redis_drill.TARGET]
    drill = Drill(db=postgres.db, repository=postgres.repository, config=postgres.config, name="redis")
    host = drill.db
    redis_drill.start_redis(host, drill.image, root)
    check(drill.install(SERVER, [source]), "installing the Redis agent")
    redis_drill.fill_redis(host, keys)
    before = redis_drill.redis_digests(host)
    count = sum(int(digest.split()[0]) for digest in before.values())
    memory = next(int(line.split(":")[1]) for line in redis_drill.redis_cli(host, "info", "memory").splitlines() if line.startswith("used_memory:"))
    data = f"{count} keys"
    figure("Redis data set (used_memory)", memory / 2**20, "MiB", data)
    timed("Redis backup", lambda: check(drill.agent("run", source.name), "backup"), data)
    figure("Redis repository after one run", drill.repository_bytes() / 2**20, "MiB", data)
    redis_drill.destroy_redis(host)
    redis_drill.start_redis(host, drill.image, root)
    timed("Redis restore with --replace-live (recovery time)",
          lambda: check(drill.restore(source.name, "--replace-live"), "restore"), data)
    if redis_drill.redis_digests(host) != before:
        print("Redis digests after the restore DIFFER", file=sys.stderr)
        return False
    print("Redis digests after the restore: equal")
    return True


if __name__ == "__main__":
    sys.exit(main())
