"""The application server's SFTP repository account, for real: backup-sftp-repository.sh as the program
renders it runs on a lab machine (playing db1) as the login user through sudo, with its defaults: the
machine's own sshd, its /etc/ssh/sshd_config.d and `systemctl reload ssh`. That sshd then lets the
application server's key, made by the program's backup-ssh-key.sh on another machine, do SFTP in its
directory and nothing else: restic init and backup work; no shell, no command, no PTY; no path outside the
chroot; and the same key from a third machine's address is refused (``from=``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.platform.host.settings import Server
from components.services.backups import component as backups
from components.shared.shell import render
from lab import LabHost, ssh
from tests.support.lab_fixture import LabSession

PASSWORD = "sftp-lab-repository-password"
# Where the client's files live on the client machine (its backup key is root-only there).
WORK = "/var/tmp/sftp-drill"
RESTIC = shutil.which("restic") or "/usr/bin/restic"


@dataclass
class Account:
    lab: LabSession
    repository: LabHost
    client: LabHost
    other: LabHost
    spec: Server
    script: str
    first_run: subprocess.CompletedProcess[str]
    reloads_before: int
    user: str = backups.SFTP_USER

    @property
    def root(self) -> Path:
        """The account's chroot, as this machine sees it in the repository machine."""
        return self.repository.root / backups.SFTP_ROOT.lstrip("/")

    def reloads(self) -> int:
        """How often the repository machine's sshd was told to reload (its journal, read from outside)."""
        return self.lab.lab.journal(self.repository.name, "ssh").count("Received SIGHUP") - self.reloads_before

    def ssh_options(self) -> str:
        return (f"-i {backups.CONFIG_DIR}/ssh_key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
                f"-o UserKnownHostsFile={backups.CONFIG_DIR}/known_hosts")

    def sftp(self, command: str, source: LabHost | None = None) -> subprocess.CompletedProcess[str]:
        """One sftp batch command against the account, from ``source`` (default: the client), as root there
        (the key is root-only, as the agent runs)."""
        source = source or self.client
        source.write_file(f"{WORK}/batch", command + "\n")
        return ssh(source, f"sftp -b {WORK}/batch {self.ssh_options()} {self.user}@{self.repository.address} 2>&1\n",
                   timeout=60, sudo=True)

    def restic(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = backups.sftp_command(self.spec, self.user)
        repository = backups.sftp_repository_url(self.spec, "application", self.user)
        return ssh(self.client, f"RESTIC_PASSWORD={PASSWORD} RESTIC_CACHE_DIR={WORK}/cache restic -o sftp.command='{command}' "
                                f"-r {repository} {' '.join(args)}\n", timeout=120, sudo=True)


def _check(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def account(lab_session: LabSession) -> Iterator[Account]:
    repository, client, other = (lab_session.host(n) for n in ("db2", "application", "swarm-node3"))
    spec = Server.model_validate({"privateIp": repository.address, "sshPort": 22, "memoryMib": 1024, "cpus": 1})
    # restic as the installer leaves it on a server (copied out of its pinned image there).
    for host in (client, other):
        shutil.copy(RESTIC, host.root / "usr/local/bin/restic")
    reloads_before = lab_session.lab.journal(repository.name, "ssh").count("Received SIGHUP")
    try:
        key_script = render("backup-ssh-key.sh", "backup-ssh-key[application]", SERVER="application", CONFIG_DIR=backups.CONFIG_DIR)
        public_key = _check(ssh(client, key_script), "backup-ssh-key.sh").stdout
        # The other machine holds the same key: only its address differs.
        for name in ("ssh_key", "ssh_key.pub"):
            other.write_file(f"{backups.CONFIG_DIR}/{name}", (client.root / backups.CONFIG_DIR.lstrip("/") / name).read_text(), mode=0o600)
        script = backups.sftp_repository_script("db1", spec, "application", client.address, public_key)
        first = _check(ssh(repository, script), "backup-sftp-repository.sh")
        for host in (client, other):
            host.write_file(f"{backups.CONFIG_DIR}/known_hosts", first.stdout, mode=0o600)
        yield Account(lab_session, repository, client, other, spec, script, first, reloads_before)
    finally:
        ssh(repository, f"userdel {backups.SFTP_USER}; rm -rf {backups.SFTP_ROOT} "
                        f"{backups.SSHD_DROP_IN_DIR}/samarth-backup-{backups.SFTP_USER}.conf; systemctl reload ssh\n", sudo=True)
        for host in (client, other):
            ssh(host, f"rm -rf {backups.CONFIG_DIR} {WORK} /usr/local/bin/restic\n", sudo=True)


def test_the_script_confines_the_account_and_pins_the_host_key(account: Account) -> None:
    assert account.first_run.stdout.startswith(f"{account.repository.address} ssh-ed25519 ")
    assert account.repository.host_key.split()[:2] == account.first_run.stdout.split()[1:3]
    drop_in = (account.repository.root / backups.SSHD_DROP_IN_DIR.lstrip("/") / f"samarth-backup-{account.user}.conf").read_text()
    assert f"ChrootDirectory {backups.SFTP_ROOT}" in drop_in and "ForceCommand internal-sftp" in drop_in
    assert (account.root.stat().st_uid, oct(account.root.stat().st_mode & 0o777)) == (0, "0o755")
    keys = account.root / ".ssh" / "authorized_keys"
    assert keys.stat().st_uid == 0, "the account could rewrite its own restrictions"
    assert keys.read_text().startswith(f'restrict,from="{account.client.address}",command="internal-sftp" ssh-ed25519 ')
    assert account.reloads() == 1
    # Idempotent: a second run prints the same line and reloads nothing.
    again = _check(ssh(account.repository, account.script), "backup-sftp-repository.sh, again")
    assert again.stdout == account.first_run.stdout
    assert account.reloads() == 1


def test_restic_init_and_backup_work_over_the_account(account: Account) -> None:
    _check(account.restic("init"), "restic init")
    account.client.write_file(f"{WORK}/data.txt", "backed up over the confined account\n")
    _check(account.restic("backup", "--quiet", f"{WORK}/data.txt"), "restic backup")
    assert "backed up over" in _check(account.restic("dump", "latest", f"{WORK}/data.txt"), "restic dump").stdout
    assert (account.root / "application" / "config").exists()


def test_no_shell_command_or_pty(account: Account) -> None:
    target = f"{account.user}@{account.repository.address}"
    for command in (f"ssh {account.ssh_options()} {target} id </dev/null",
                    f"ssh {account.ssh_options()} {target} 'cat /etc/passwd' </dev/null",
                    f"ssh -tt {account.ssh_options()} {target} </dev/null"):
        result = ssh(account.client, f"timeout 20 {command} 2>&1\n", timeout=60, sudo=True)
        assert "uid=" not in result.stdout and "root:x:0:0" not in result.stdout, (command, result.stdout)
    # A TCP forward through the account (to the repository host's own sshd): refused at once.
    forwarding = ssh(account.client, f"timeout 20 ssh {account.ssh_options()} -W 127.0.0.1:22 {target} </dev/null 2>&1\n",
                     timeout=60, sudo=True)
    assert forwarding.returncode not in (0, 124) and "SSH-2.0" not in forwarding.stdout, forwarding.stdout
    assert "prohibited" in forwarding.stdout, forwarding.stdout


def _names(listing: str) -> set[str]:
    """The names sftp's `ls -1a <dir>` printed (as <dir>/<name>), without the echoed command."""
    return {line.rsplit("/", 1)[-1] for line in listing.splitlines() if not line.startswith("sftp>")}


def test_nothing_outside_its_directory(account: Account) -> None:
    listing = _names(_check(account.sftp("ls -1a /"), "listing the chroot").stdout)
    assert listing == {".", "..", ".ssh", "application"}
    assert account.sftp(f"get /etc/passwd {WORK}/stolen").returncode != 0
    assert not (account.client.root / WORK.lstrip("/") / "stolen").exists()
    assert _check(account.sftp("cd /../../.."), "cd up").returncode == 0
    assert _names(_check(account.sftp("ls -1a /../.."), "listing above the chroot").stdout) == listing
    account.client.write_file(f"{WORK}/evil", "x\n")
    assert account.sftp(f"put {WORK}/evil /evil").returncode != 0
    assert account.sftp(f"put {WORK}/evil /.ssh/authorized_keys").returncode != 0
    assert not (account.root / "evil").exists()


def test_the_key_is_refused_from_another_address(account: Account) -> None:
    assert _check(account.sftp("ls /application"), "the client").returncode == 0
    refused = account.sftp("ls /application", source=account.other)
    assert refused.returncode != 0 and "Permission denied" in refused.stdout, refused.stdout
