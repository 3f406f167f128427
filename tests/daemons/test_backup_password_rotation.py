"""Rotating a server's backup passwords keeps its backups: the program's installer
(components/services/backups/scripts/backup-install.sh as ``components.services.backups.component.install_script`` renders it) run twice, with
real restic (Debian's 0.14) on a repository over SFTP (restic's sftp backend with OpenSSH's sftp-server
as its ``sftp.command``, as the agent passes the application server's) and an off-site repository reached
the agent's way, through real rclone (Debian's 1.60; a local remote in place of S3 or SFTP). Stand-ins:
``docker`` (the installer copies restic and rclone out of their images; the agent's ``docker exec`` of a
Redis target prints a dump) and ``systemctl``.

A new password becomes a key of the repository, is proven, the old key is removed, and only then is the
password file replaced: the old snapshots stay listed and restorable, the old password is refused, the
agent backs up as before. A repository that neither password opens is left as it was."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.config import validate
from components.services.backups import component as backups
from components.shared.service import BackupSource
from tests.support.restic_keys import cheapen_key
from tests.support.skip_policy import as_root
from tests.unit.test_backup_offsite import _raw

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
pytestmark = [
    pytest.mark.skipif(shutil.which("restic") is None, reason="restic is missing: apt-get install -y restic"),
    pytest.mark.skipif(shutil.which("rclone") is None, reason="rclone is missing: apt-get install -y rclone"),
    pytest.mark.skipif(not Path(SFTP_SERVER).is_file(), reason=f"{SFTP_SERVER} is missing: apt-get install -y openssh-server"),
]

SERVER = "db2"
TARGET = BackupSource(SERVER, "redis-rotation", "redis", "redis-rotation", "/data")
OLD, NEW = "old0repository0password0123456789abcdef", "new0repository0password0123456789abcdef"
OLD_OFFSITE, NEW_OFFSITE = "old0offsite0password0123456789abcdef0123", "new0offsite0password0123456789abcdef0123"
WRONG = "wrong0password0nobody0installed0here0012"

# `docker cp <container>:/usr/bin/restic DEST` copies this machine's binary of that name; `docker exec`
# plays `redis-cli --rdb -` from the file the test writes.
DOCKER = """#!/bin/sh
case "$1" in
  create) echo stand-in ;;
  cp) cp "/usr/bin/${{2##*/}}" "$3" ;;
  rm) ;;
  exec) cat {root}/dump.rdb ;;
  *) exit 99 ;;
esac
"""


@dataclass
class Server:
    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def repository(self) -> Path:
        return self.root / "repository"

    @property
    def offsite(self) -> Path:
        return self.root / "offsite"

    def install(self, password: str, offsite_password: str) -> subprocess.CompletedProcess[str]:
        """The program's installer with the credentials on stdin, as `pulumi up` runs it."""
        layout = backups.Layout(
            config_dir=str(self.etc), state_dir=str(self.root / "state"), restic=str(self.root / "lib" / "restic"),
            rclone=str(self.root / "lib" / "rclone"), sbin_dir=str(self.root / "sbin"), unit_dir=str(self.root / "units"),
        )
        bin_dir = self.root / "bin"
        for directory in (bin_dir, self.root / "sbin", self.root / "units"):
            directory.mkdir(parents=True, exist_ok=True)
        (bin_dir / "docker").write_text(DOCKER.format(root=self.root))
        (bin_dir / "systemctl").write_text('#!/bin/sh\necho "$*" >>"${0%/*}/systemctl.log"\n')
        for stand_in in bin_dir.iterdir():
            stand_in.chmod(0o755)
        script = self.root / "install.sh"
        script.write_text(
            f"PATH={bin_dir}:$PATH\n"
            + backups.install_script(validate(_raw()).backups, SERVER, [TARGET], "restic/restic:stand-in", layout, rclone_image="rclone/rclone:stand-in")
        )
        remote = f"RCLONE_CONFIG_{backups.OFFSITE_REMOTE.upper()}_"
        stdin = backups.credential_text({
            "RESTIC_PASSWORD": password,
            "RESTIC_REPOSITORY": f"sftp:samarth-backup@stand-in:{self.repository}",
            "SAMARTH_SFTP_COMMAND": SFTP_SERVER,
            "offsite_password": offsite_password,
            "SAMARTH_OFFSITE_REPOSITORY": f"rclone:{backups.OFFSITE_REMOTE}:{self.offsite}",
            "RCLONE_CONFIG": "/dev/null",
            f"{remote}TYPE": "local",
        })
        return subprocess.run(as_root(["sh", str(script)]), input=stdin, capture_output=True, text=True, timeout=300)

    def agent(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": f"{self.root / 'bin'}:{os.environ['PATH']}"}
        return subprocess.run(as_root([str(self.root / "sbin" / "samarth-backup"), *args]), capture_output=True, text=True, env=env, timeout=300)

    def restic(self, repository: Path, password: str, *args: str) -> subprocess.CompletedProcess[str]:
        """restic on ``repository`` read where it lies, as an operator would from any machine."""
        password_file = self.root / "password-check"
        password_file.write_text(password + "\n")
        env = {**os.environ, "RESTIC_REPOSITORY": str(repository), "RESTIC_PASSWORD_FILE": str(password_file),
               "RESTIC_CACHE_DIR": str(self.root / "cache")}
        return subprocess.run(["restic", *args], capture_output=True, text=True, env=env, timeout=120)

    def snapshots(self, repository: Path, password: str) -> list[str]:
        listed = self.restic(repository, password, "snapshots", "--json")
        assert listed.returncode == 0, listed.stderr
        return sorted(s["id"] for s in json.loads(listed.stdout))

    def latest(self, repository: Path, password: str) -> str:
        """The dump of the newest snapshot (the retention keeps one a hour: a later run replaces it)."""
        restored = self.restic(repository, password, "dump", "latest", "/dump.rdb")
        assert restored.returncode == 0, restored.stderr
        return restored.stdout

    def backup(self, content: str) -> None:
        (self.root / "dump.rdb").write_text(content)
        run = self.agent("run", TARGET.name)
        assert run.returncode == 0, run.stderr
        assert "copied off-site" in run.stdout


def _files(repository: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repository)): p.read_bytes() for p in sorted(repository.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A server whose agent was installed with the old passwords and has taken one backup, kept aside:
    each test starts from a copy of it at the same place (the installed files name their paths)."""
    root = tmp_path_factory.mktemp("rotation")
    server = Server(root / "server")
    done = server.install(OLD, OLD_OFFSITE)
    assert done.returncode == 0, done.stderr
    assert "repository initialised" in done.stderr and "off-site repository initialised" in done.stderr
    # Every restic command opens the repository: the init's key re-wrapped with a cheap scrypt cost.
    cheapen_key(server.repository, OLD)
    cheapen_key(server.offsite, OLD_OFFSITE)
    server.backup("before the rotation")
    shutil.copytree(server.root, root / "installed", symlinks=True)
    return root


@pytest.fixture
def server(installed: Path) -> Server:
    server = Server(installed / "server")
    shutil.rmtree(server.root)
    shutil.copytree(installed / "installed", server.root, symlinks=True)
    return server


def test_new_passwords_become_keys_and_the_backups_stay_readable(server: Server) -> None:
    repositories = ((server.repository, OLD, NEW, "password"), (server.offsite, OLD_OFFSITE, NEW_OFFSITE, "offsite_password"))
    before = {repository: (server.snapshots(repository, old), _files(repository / "keys")) for repository, old, _, _ in repositories}

    rotated = server.install(NEW, NEW_OFFSITE)
    assert rotated.returncode == 0, rotated.stderr
    for repository, old, new, file in repositories:
        snapshots, keys = before[repository]
        assert (server.etc / file).read_text() == new + "\n"
        assert oct((server.etc / file).stat().st_mode & 0o777) == "0o600"
        (new_key,) = _files(repository / "keys")
        assert new_key not in keys
        # The new key, made by `restic key add`, at the cheap scrypt cost too (the same master key).
        cheapen_key(repository, new)
        assert server.snapshots(repository, new) == snapshots
        assert server.latest(repository, new) == "before the rotation"
        refused = server.restic(repository, old, "cat", "config")
        assert refused.returncode != 0 and "wrong password or no key found" in refused.stderr
    assert "repository: the new password is key" in rotated.stderr
    assert "off-site repository: the new password is key" in rotated.stderr
    assert not list(server.etc.glob("*.new"))

    # The agent backs up with the new passwords, off-site too.
    server.backup("after the rotation")
    for repository, _, new, _ in repositories:
        assert server.latest(repository, new) == "after the rotation"

    # Installed again with the same passwords: nothing changes, neither the files nor the repositories' keys.
    files = {name: (server.etc / name).stat() for name in ("password", "offsite_password")}
    key_files = {repository: _files(repository / "keys") for repository, _, _, _ in repositories}
    again = server.install(NEW, NEW_OFFSITE)
    assert again.returncode == 0, again.stderr
    assert "repository exists" in again.stderr and "off-site repository exists" in again.stderr
    for name, stat in files.items():
        now = (server.etc / name).stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), name
    assert {repository: _files(repository / "keys") for repository, _, _, _ in repositories} == key_files
    assert not list(server.etc.glob("*.new"))


def test_an_off_site_password_alone_rotates_the_same_way(server: Server) -> None:
    keys = _files(server.repository / "keys")
    rotated = server.install(OLD, NEW_OFFSITE)
    assert rotated.returncode == 0, rotated.stderr
    assert _files(server.repository / "keys") == keys
    assert (server.etc / "offsite_password").read_text() == NEW_OFFSITE + "\n"
    cheapen_key(server.offsite, NEW_OFFSITE)
    assert server.restic(server.offsite, OLD_OFFSITE, "cat", "config").returncode != 0
    assert server.latest(server.offsite, NEW_OFFSITE) == "before the rotation"
    server.backup("after the off-site rotation")
    assert server.latest(server.offsite, NEW_OFFSITE) == "after the off-site rotation"


@pytest.mark.parametrize(
    "file, password, new, expected",
    [
        ("password", WRONG, (NEW, NEW_OFFSITE), r"neither the new password nor the installed one \(.*/etc/password\) opens the repository at sftp:"),
        ("password", None, (NEW, NEW_OFFSITE), r"the new password does not open the repository at sftp:.*, and no password is installed"),
        ("offsite_password", WRONG, (OLD, NEW_OFFSITE), r"neither the new password nor the installed one \(.*/etc/offsite_password\) opens the off-site repository at rclone:"),
    ],
)
def test_a_repository_no_known_password_opens_is_left_as_it_was(
    server: Server, file: str, password: str | None, new: tuple[str, str], expected: str
) -> None:
    """The installed password is not the repository's (lost, or edited by hand): the installer stops
    with what to do, and changes neither the repositories nor the password files."""
    if password is None:
        (server.etc / file).unlink()
    else:
        (server.etc / file).write_text(password + "\n")
    state = {name: (server.etc / name).read_bytes() for name in ("password", "offsite_password") if (server.etc / name).exists()}
    repositories = {repository: _files(repository) for repository in (server.repository, server.offsite)}

    refused = server.install(*new)
    assert refused.returncode != 0
    assert re.search(expected, refused.stderr), refused.stderr
    assert "nothing was changed" in refused.stderr and "Never 'restic init' there" in refused.stderr
    assert "run 'pulumi up' again" in refused.stderr
    assert state == {name: (server.etc / name).read_bytes() for name in ("password", "offsite_password") if (server.etc / name).exists()}
    assert not list(server.etc.glob("*.new"))
    assert repositories == {repository: _files(repository) for repository in (server.repository, server.offsite)}
    assert server.snapshots(server.repository, OLD) and server.snapshots(server.offsite, OLD_OFFSITE)

