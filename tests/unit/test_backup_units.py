"""The backup schedules under systemd's own tools: the program's installer (backup-install.sh,
 as rendered for every prod server with targets) writes its units into a scratch
directory, and ``systemd-analyze verify`` checks every timer and service it wrote, with the stacks'
schedules and with calendar events of other forms (tests/unit/test_systemd_time.py compares the config's
check of any schedule with ``systemd-analyze calendar``). Here the units of every prod server are verified
offline (tests/lab/test_backups_lab.py runs them under a lab machine's systemd); the installer runs with
stand-ins for docker (it copies restic out of an image) and systemctl (no timer enabled yet; enable
--now), and a stand-in restic that finds the repository."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.assembly import backup_sources
from components.config import validate
from components.services.backups import component as backups
from tests.support.skip_policy import as_root
from tests.unit.test_backup_offsite import S3, _raw, _with_offsite

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing: apt-get install -y systemd")

STAND_INS = {
    "docker": '#!/bin/sh\ncase "$1" in\n  create) echo stand-in ;;\n'
              '  cp) printf \'#!/bin/sh\\necho "stand-in $*"\\n[ "$1" != snapshots ] || echo "[]"\\n\' >"$3"; chmod 755 "$3" ;;\nesac\n',
    "systemctl": '#!/bin/sh\necho "$*" >>"${0%/*}/systemctl.log"\ncase "$1" in is-*) exit 3 ;; esac\n',
}


def _install(tmp_path: Path, server: str, **backups_settings: Any) -> Path:
    """Run the installer for ``server`` (prod, with an S3 off-site repository and ``backups_settings``)
    into ``tmp_path``; the unit directory."""
    raw = _with_offsite(S3)
    raw["backups"] = {**raw["backups"], **backups_settings}
    config = validate(raw)
    sources = [s for s in backup_sources(config) if s.server == server]
    layout = backups.Layout(
        config_dir=str(tmp_path / "etc"), state_dir=str(tmp_path / "state"), restic=str(tmp_path / "lib/restic"),
        rclone=str(tmp_path / "lib/rclone"), sbin_dir=str(tmp_path / "sbin"), unit_dir=str(tmp_path / "units"),
    )
    bin_dir = tmp_path / "bin"
    for directory in (bin_dir, tmp_path / "sbin", tmp_path / "units"):
        directory.mkdir(parents=True, exist_ok=True)
    for name, text in STAND_INS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "install.sh"
    script.write_text(f"PATH={bin_dir}:$PATH\n" + backups.install_script(config.backups, server, sources, config.versions.restic, layout))
    stdin = backups.credential_text({"RESTIC_PASSWORD": "p" * 40, "RESTIC_REPOSITORY": "s3:http://10.0.0.1:9000/b/x", "offsite_password": "o" * 40})
    # As root (or root of a user namespace, as another user): the installer writes its root-only files itself.
    result = subprocess.run(as_root(["sh", str(script)]), input=stdin, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return tmp_path / "units"


def _verify(units: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    # The unit directory first, then systemd's own (a trailing ':'), so Unit= and WantedBy= resolve.
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "SYSTEMD_UNIT_PATH": f"{units}:", "SYSTEMD_LOG_LEVEL": "notice"}
    return subprocess.run(["systemd-analyze", "verify", *(str(units / n) for n in names)], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("server", ["db1", "db2", "application", "swarm-master"])
def test_every_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path, server: str) -> None:
    units = _install(tmp_path, server)
    timers = sorted(p.name for p in units.glob("*.timer"))
    targets = [s.name for s in backup_sources(validate(_raw())) if s.server == server]
    assert timers == sorted([f"samarth-backup-{t}.timer" for t in targets] + ["samarth-backup-prune.timer"])
    # The template as each timer starts it (an instance per target), the prune service and every timer.
    for target in targets:
        shutil.copy(units / "samarth-backup@.service", units / f"samarth-backup@{target}.service")
    services = [f"samarth-backup@{t}.service" for t in targets] + ["samarth-backup-prune.service"]
    result = _verify(units, timers + services)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result.stdout + result.stderr
    (enable,) = [line.split()[2:] for line in (tmp_path / "bin" / "systemctl.log").read_text().splitlines() if line.startswith("enable --now")]
    assert sorted(enable) == timers


def test_verify_finds_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a timer with a schedule systemd cannot parse is reported."""
    units = _install(tmp_path, "db1")
    timer = units / "samarth-backup-prune.timer"
    timer.write_text(timer.read_text().replace("OnCalendar=daily", "OnCalendar=every day"))
    result = _verify(units, [timer.name])
    assert result.returncode != 0 or "Failed to parse" in result.stderr, result.stderr


def test_timers_with_calendar_events_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = _install(tmp_path, "db1", schedules={"postgres": "*:0/15"}, defaultSchedule="Mon..Fri")
    timers = sorted(p.name for p in units.glob("*.timer"))
    lines = {name: (units / name).read_text().splitlines() for name in timers}
    on_calendar = {line for text in lines.values() for line in text if line.startswith("OnCalendar=")}
    assert on_calendar == {"OnCalendar=*:0/15", "OnCalendar=Mon..Fri", f"OnCalendar={backups.PRUNE_SCHEDULE}"}
    result = _verify(units, timers)
    assert result.returncode == 0 and not result.stderr.strip(), result.stdout + result.stderr
