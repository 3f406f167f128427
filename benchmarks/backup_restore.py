"""Prints how long the program's backup and restore of a Postgres target take, and the repository size,
for a data set of stated size: the lab drill of tests/backup_drill.py (Debian's PostgreSQL 15, restic 0.14
over SFTP to another lab host) with ``rows`` rows in the big table (about 220 bytes each on disk).

Run as root: `sudo venv/bin/python -m benchmarks.backup_restore [rows]` (default 1,000,000).
Figures: time of the first backup, of a second backup with unchanged data (deduplicated), of a restore
into a scratch volume with its checks, of a restore with --replace-live; database and repository size.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lab import Lab, free_subnet, machine_lock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from backup_drill import TARGET, Drill, check, checksums, fill, staging_config


def timed(what: str, action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    elapsed = time.monotonic() - started
    print(f"{what:<44} {elapsed:8.1f} s", flush=True)
    return elapsed


def main() -> int:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    if os.geteuid() != 0:
        print("run as root (the lab uses network namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        root.chmod(0o755)
        with machine_lock():
            lab = Lab(prefix=f"b{os.getpid()}", subnet=free_subnet(), state_dir=root / "lab", timeout=90)
            try:
                hosts = lab.up(["db2", "repository"])
            except BaseException:
                lab.down()
                raise
        try:
            drill = Drill(db=hosts[0], repository_host=hosts[1], root=root / "backups", config=staging_config())
            (root / "backups").mkdir()
            drill.start_postgres()
            check(drill.install(), "installing the agent")
            fill(drill, rows)
            before = checksums(drill)
            size = int(drill.sql("postgres", "select sum(pg_database_size(datname)) from pg_database"))
            print(f"data set: {rows} rows in odk_adapter.items plus {rows // 4} in events; "
                  f"{size / 2**20:.0f} MiB of databases on disk")
            timed("backup (first run)", lambda: check(drill.agent("run", TARGET), "backup"))
            first = drill.repository_bytes()
            timed("backup (second run, data unchanged)", lambda: check(drill.agent("run", TARGET), "backup"))
            print(f"{'repository after two runs':<44} {drill.repository_bytes() / 2**20:8.1f} MiB (after one: {first / 2**20:.1f} MiB)")
            drill.destroy_data()
            drill.start_postgres()
            timed("restore into a scratch volume, checked", lambda: check(drill.restore(TARGET), "restore"))
            timed("restore with --replace-live", lambda: check(drill.restore(TARGET, "--replace-live"), "restore"))
            drill.wait_ready()
            print("checksums after the restore:", "equal" if checksums(drill) == before else "DIFFERENT")
        finally:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
