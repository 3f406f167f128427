"""The application server's SFTP repository account, for real: backup-sftp-repository.sh as the program
renders it runs on a lab host (playing db1), and that host's sshd (a second instance on port 2222 with
the host's own key, its configuration including the script's drop-in directory as Debian's does) then
lets the application server's key, made by the program's backup-ssh-key.sh on another lab host, do
SFTP in its directory and nothing else: restic init and backup work; no shell, no command, no PTY; no
path outside the chroot; and the same key from a third lab host's address is refused (``from=``).

The lab's hosts share this machine's filesystem, so the account, its chroot and the drop-in directory
carry this run's process id and are removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components import backups
from components.config import Server
from components.shell import render
from lab import LabHost, ssh
from lab_fixture import LabSession

PORT = 2222
PASSWORD = "sftp-lab-repository-password"


@dataclass
class Account:
    repository: LabHost
    client: LabHost
    other: LabHost
    spec: Server
    user: str
    root: Path
    work: Path
    script: Path
    first_run: subprocess.CompletedProcess[str]

    @property
    def client_dir(self) -> Path:
        return self.work / "client-etc"

    def ssh_options(self) -> str:
        return (f"-i {self.client_dir}/ssh_key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
                f"-o UserKnownHostsFile={self.client_dir}/known_hosts")

    def sftp(self, command: str, source: LabHost | None = None) -> subprocess.CompletedProcess[str]:
        """One sftp batch command against the account, from ``source`` (default: the client)."""
        batch = self.work / "batch"
        batch.write_text(command + "\n")
        return ssh(source or self.client, f"sftp -b {batch} {self.ssh_options()} -P {PORT} {self.user}@{self.repository.address} 2>&1\n", timeout=60)

    def restic(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = backups.sftp_command(self.spec, self.user, str(self.client_dir))
        repository = backups.sftp_repository_url(self.spec, "application", self.user)
        return ssh(self.client, f"RESTIC_PASSWORD={PASSWORD} RESTIC_CACHE_DIR={self.work}/cache restic -o sftp.command='{command}' "
                                f"-r {repository} {' '.join(args)}\n", timeout=120)


def _check(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def account(lab_session: LabSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    repository, client, other = (lab_session.host(n) for n in ("db2", "application", "swarm-node3"))
    work = tmp_path_factory.mktemp("sftp-account")
    work.chmod(0o755)
    user = f"samarth-bk-{os.getpid()}"
    # A chroot's every parent must be root's and not writable by others: not under /tmp.
    root = Path(f"/srv/samarth-lab-sftp-{os.getpid()}")
    drop_ins = work / "sshd_config.d"
    drop_ins.mkdir()
    stub = work / "stub"
    stub.mkdir()
    (stub / "systemctl").write_text(f'#!/bin/sh\necho "$*" >>{work}/systemctl.log\n')
    (stub / "systemctl").chmod(0o755)
    sshd_config = work / "sshd_config"
    host_key = lab_session.lab.host_dir(repository.name) / "ssh_host_ed25519_key"
    sshd_config.write_text("\n".join([
        # As Debian's sshd_config begins.
        f"Include {drop_ins}/*.conf",
        f"Port {PORT}",
        f"ListenAddress {repository.address}",
        f"HostKey {host_key}",
        f"PidFile {work}/sshd.pid",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
        "",
    ]))
    spec = Server.model_validate({"privateIp": repository.address, "sshPort": PORT, "memoryMib": 1024, "cpus": 1})
    try:
        key_script = work / "ssh-key.sh"
        key_script.write_text(render("backup-ssh-key.sh", "backup-ssh-key[application]", SERVER="application", CONFIG_DIR=str(work / "client-etc")))
        public_key = _check(ssh(client, f"sh {key_script}\n"), "backup-ssh-key.sh").stdout
        script = work / "sftp-repository.sh"
        script.write_text(f"PATH={stub}:$PATH\n" + backups.sftp_repository_script(
            "db1", spec, "application", client.address, public_key, sshd_config=str(sshd_config), sshd_drop_in_dir=str(drop_ins),
            user=user, root=str(root)))
        first = _check(ssh(repository, f"sh {script}\n"), "backup-sftp-repository.sh")
        (work / "client-etc" / "known_hosts").write_text(first.stdout)
        _check(ssh(repository, f"/usr/sbin/sshd -f {sshd_config} -E {work}/sshd.log\n"), "starting sshd")
        yield Account(repository, client, other, spec, user, root, work, script, first)
    finally:
        if (work / "sshd.pid").exists():
            subprocess.run(["kill", (work / "sshd.pid").read_text().strip()], check=False)
        subprocess.run(["userdel", user], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_the_script_confines_the_account_and_pins_the_host_key(account: Account) -> None:
    assert account.first_run.stdout.startswith(f"[{account.repository.address}]:{PORT} ssh-ed25519 ")
    assert account.repository.host_key.split()[:2] == account.first_run.stdout.split()[1:3]
    drop_in = (account.work / "sshd_config.d" / f"samarth-backup-{account.user}.conf").read_text()
    assert f"ChrootDirectory {account.root}" in drop_in and "ForceCommand internal-sftp" in drop_in
    assert (account.root.stat().st_uid, oct(account.root.stat().st_mode & 0o777)) == (0, "0o755")
    keys = account.root / ".ssh" / "authorized_keys"
    assert keys.stat().st_uid == 0, "the account could rewrite its own restrictions"
    assert keys.read_text().startswith(f'restrict,from="{account.client.address}",command="internal-sftp" ssh-ed25519 ')
    assert (account.work / "systemctl.log").read_text() == "reload ssh\n"
    # Idempotent: a second run prints the same line and reloads nothing.
    again = _check(ssh(account.repository, f"sh {account.script}\n"), "backup-sftp-repository.sh, again")
    assert again.stdout == account.first_run.stdout
    assert (account.work / "systemctl.log").read_text() == "reload ssh\n"


def test_restic_init_and_backup_work_over_the_account(account: Account) -> None:
    _check(account.restic("init"), "restic init")
    (account.work / "data.txt").write_text("backed up over the confined account\n")
    _check(account.restic("backup", "--quiet", str(account.work / "data.txt")), "restic backup")
    assert "backed up over" in _check(account.restic("dump", "latest", str(account.work / "data.txt")), "restic dump").stdout
    assert (account.root / "application" / "config").exists()


def test_no_shell_command_or_pty(account: Account) -> None:
    target = f"{account.user}@{account.repository.address}"
    for command in (f"ssh {account.ssh_options()} -p {PORT} {target} id </dev/null",
                    f"ssh {account.ssh_options()} -p {PORT} {target} 'cat /etc/passwd' </dev/null",
                    f"ssh -tt {account.ssh_options()} -p {PORT} {target} </dev/null"):
        result = ssh(account.client, f"timeout 20 {command} 2>&1\n", timeout=60)
        assert "uid=" not in result.stdout and "root:x:0:0" not in result.stdout, (command, result.stdout)
    # A TCP forward through the account (to the repository host's own sshd): refused at once.
    forwarding = ssh(account.client, f"timeout 20 ssh {account.ssh_options()} -p {PORT} -W 127.0.0.1:22 {target} </dev/null 2>&1\n", timeout=60)
    assert forwarding.returncode not in (0, 124) and "SSH-2.0" not in forwarding.stdout, forwarding.stdout
    assert "prohibited" in forwarding.stdout, forwarding.stdout


def _names(listing: str) -> set[str]:
    """The names sftp's `ls -1a <dir>` printed (as <dir>/<name>), without the echoed command."""
    return {line.rsplit("/", 1)[-1] for line in listing.splitlines() if not line.startswith("sftp>")}


def test_nothing_outside_its_directory(account: Account) -> None:
    listing = _names(_check(account.sftp("ls -1a /"), "listing the chroot").stdout)
    assert listing == {".", "..", ".ssh", "application"}
    assert account.sftp("get /etc/passwd " + str(account.work / "stolen")).returncode != 0
    assert not (account.work / "stolen").exists()
    assert _check(account.sftp("cd /../../.."), "cd up").returncode == 0
    assert _names(_check(account.sftp("ls -1a /../.."), "listing above the chroot").stdout) == listing
    (account.work / "evil").write_text("x\n")
    assert account.sftp(f"put {account.work / 'evil'} /evil").returncode != 0
    assert account.sftp(f"put {account.work / 'evil'} /.ssh/authorized_keys").returncode != 0
    assert not (account.root / "evil").exists()


def test_the_key_is_refused_from_another_address(account: Account) -> None:
    assert _check(account.sftp("ls /application"), "the client").returncode == 0
    refused = account.sftp("ls /application", source=account.other)
    assert refused.returncode != 0 and "Permission denied" in refused.stdout, refused.stdout
