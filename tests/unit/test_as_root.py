"""Root's part of the remote scripts goes one way: components/shared/scripts/root-lib.sh's ``as_root`` (root runs
it as it is, any other SSH user through passwordless ``sudo -n``) after its ``need_root`` check, whose
failure says who needs sudo on which server for what. The stacks log in as a non-root ``sshUser``.

Behavioural: the rendered helper under a stand-in ``sudo``, as a non-root user. That every script goes
through it is checked on shfmt's syntax tree: tests/tools/test_as_root_checker.py."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

from components.shared.shell import render
from tests.support import skip_policy

LIBRARY = "root-lib.sh"


FAKE_SUDO = """#!/bin/sh
echo "$*" >> "$SUDO_LOG"
[ -z "${SUDO_REFUSES:-}" ] || { echo "sudo: a password is required" >&2; exit 1; }
# Drain stdin for `sudo -n true`, as a sudo relaying input would: the check must not hand it any.
[ "$*" != "-n true" ] || cat >/dev/null
# Root may write where the user may not: the directory named in SUDO_OPENS opens for the command.
[ -z "${SUDO_OPENS:-}" ] || chmod u+w "$SUDO_OPENS"
shift
exec "$@"
"""

PROBE = """
need_root "to write the probe"
printf 'piped\\n' | as_root tee "$WORK/written" >/dev/null
as_root touch "$WORK/touched"
printf '%s' "$(cat)" > "$WORK/rest-of-stdin"
"""


@pytest.fixture(scope="module")
def probe_user() -> Iterator[pwd.struct_passwd]:
    """A non-root user: this one when the tests do not run as root, else a system user made for them."""
    if os.getuid() != 0:
        yield pwd.getpwuid(os.getuid())
        return
    if shutil.which("useradd") is None:
        pytest.skip("running as root without useradd: no non-root user to run the helper as (apt-get install passwd)")
    name = "samarth-sudo-probe"
    made = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True)
    assert made.returncode in (0, 9), made.stderr  # 9: it exists (a run that was killed)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture
def work(probe_user: pwd.struct_passwd) -> Iterator[Path]:
    """A directory the probe user owns, with the stand-in sudo first on PATH."""
    directory = Path(tempfile.mkdtemp(prefix="samarth-sudo-"))
    try:
        (directory / "bin").mkdir()
        (directory / "bin" / "sudo").write_text(FAKE_SUDO)
        (directory / "bin" / "sudo").chmod(0o755)
        for path in (directory, directory / "bin"):
            os.chown(path, probe_user.pw_uid, probe_user.pw_gid)
        directory.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        yield directory
    finally:
        shutil.rmtree(directory)


def _run(work: Path, user: Optional[pwd.struct_passwd], stdin: str, script: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """The script as ``user``, or as root (of a user namespace, as another user) without one."""
    script = script or render(LIBRARY, "probe", SERVER="db1", WORK=str(work)) + PROBE
    environment = {"PATH": f"{work / 'bin'}:/usr/bin:/bin", "HOME": str(work), "SUDO_LOG": str(work / "sudo.log"), **env}
    argv = ["sh", "-c", script] if user else skip_policy.as_root(["sh", "-c", script])
    switch = {} if user is None or os.getuid() == user.pw_uid else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=environment, timeout=30, **switch)  # type: ignore[call-overload]


def _sudo_log(work: Path) -> list[str]:
    log = work / "sudo.log"
    return log.read_text().splitlines() if log.exists() else []


def test_as_a_non_root_user_root_commands_go_through_sudo_and_stdin_stays_the_scripts(work: Path, probe_user: pwd.struct_passwd) -> None:
    done = _run(work, probe_user, "rest of the script's stdin\n")
    assert done.returncode == 0, done.stderr
    assert _sudo_log(work) == ["-n true", f"-n tee {work}/written", f"-n touch {work}/touched"]
    # What is piped into as_root reaches the command; the check read none of the script's own stdin.
    assert (work / "written").read_text() == "piped\n"
    assert (work / "rest-of-stdin").read_text() == "rest of the script's stdin"


def test_without_passwordless_sudo_the_script_stops_before_any_change_saying_who_needs_what(work: Path, probe_user: pwd.struct_passwd) -> None:
    done = _run(work, probe_user, "", SUDO_REFUSES="yes")
    assert done.returncode == 1
    assert f"probe: user {probe_user.pw_name} needs passwordless sudo on db1 to write the probe" in done.stderr
    assert "servers.db1.sshUser" in done.stderr
    assert _sudo_log(work) == ["-n true"]
    assert not (work / "written").exists() and not (work / "touched").exists()


def test_as_root_the_commands_run_without_sudo(work: Path) -> None:
    done = _run(work, None, "stdin\n", SUDO_REFUSES="yes")
    assert done.returncode == 0, done.stderr
    assert _sudo_log(work) == []
    assert (work / "written").read_text() == "piped\n" and (work / "touched").exists()


def test_a_compose_projects_directory_under_roots_parent_is_made_through_sudo_and_given_to_the_user(
    work: Path, probe_user: pwd.struct_passwd
) -> None:
    parent = work / "opt"  # as /opt/samarth: the user may not write there
    parent.mkdir()
    os.chown(parent, probe_user.pw_uid, probe_user.pw_gid)
    parent.chmod(0o555)
    directory = parent / "sentry"
    script = render("compose-lib.sh", "sentry-install", NAME="sentry", DIRECTORY=str(directory), SERVER="application", ENV_FILE=".env") + "compose_directory\n"

    done = _run(work, probe_user, "", script, SUDO_OPENS=str(parent))
    assert done.returncode == 0, done.stderr
    assert _sudo_log(work) == ["-n true", f"-n mkdir -p {directory}", f"-n chown {probe_user.pw_uid}:{probe_user.pw_gid} {directory}"]
    assert directory.stat().st_uid == probe_user.pw_uid

    (work / "sudo.log").unlink()
    assert _run(work, probe_user, "", script).returncode == 0
    assert _sudo_log(work) == []  # there and the user's: nothing asked of sudo

    directory.chmod(0o555)
    refused = _run(work, probe_user, "", script)
    assert refused.returncode == 1
    assert f"{directory} exists but user {probe_user.pw_name} cannot write to it" in refused.stderr
