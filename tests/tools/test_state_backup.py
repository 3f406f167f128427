"""tools/backup-pulumi-state.sh with real restic (a stand-in `pulumi` prints a stack export, or fails
half-way), and the script's shellcheck."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.restic_keys import cheapen_key

ROOT = Path(__file__).resolve().parents[2]


def test_pulumi_state_backup_streams_each_export_and_forgets_a_failed_run(tmp_path: Path) -> None:
    if shutil.which("restic") is None:
        pytest.skip("restic is missing: apt-get install -y restic")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(
        "#!/bin/sh\n"
        'case "$1 $2" in\n'
        '  "whoami --verbose") echo "Backend URL: https://api.pulumi.com" ;;\n'
        '  "stack ls") echo \'[{"name": "org/samarth-infra/prod"}, {"name": "org/samarth-infra/staging"}]\' ;;\n'
        '  "stack export") [ "$4" = staging ] && [ -n "${FAIL_STAGING:-}" ] && { echo "{\\"partial\\":"; exit 3; }; echo "{\\"stack\\": \\"$4\\"}" ;;\n'
        "esac\n"
    )
    (bin_dir / "pulumi").chmod(0o755)
    password = tmp_path / "password"
    password.write_text("state-backup-test\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RESTIC_REPOSITORY": str(tmp_path / "repo"),
           "RESTIC_PASSWORD_FILE": str(password), "RESTIC_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
    # A dozen restic commands follow, each opening the repository: with the key's cheap scrypt cost
    # they take a tenth of the time (the repository and restic stay real).
    cheapen_key(tmp_path / "repo", "state-backup-test")
    script = str(ROOT / "tools" / "backup-pulumi-state.sh")

    done = subprocess.run(["sh", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    snapshots = json.loads(subprocess.run(["restic", "snapshots", "--json"], env=env, capture_output=True, text=True).stdout)
    assert sorted(s["paths"][0] for s in snapshots) == ["/prod.json", "/staging.json"]
    assert all("complete" in s["tags"] for s in snapshots)
    dumped = subprocess.run(["restic", "dump", "latest", "/staging.json"], env=env, capture_output=True, text=True).stdout
    assert json.loads(dumped) == {"stack": "staging"}

    failed = subprocess.run(["sh", script], env={**env, "FAIL_STAGING": "1"}, capture_output=True, text=True)
    assert failed.returncode != 0 and "staging failed" in failed.stderr
    after = json.loads(subprocess.run(["restic", "snapshots", "--json"], env=env, capture_output=True, text=True).stdout)
    assert len(after) == len(snapshots), "the failed run left snapshots"


def test_the_state_backup_script_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is missing: apt-get install -y shellcheck")
    result = subprocess.run(["shellcheck", "--shell=sh", str(ROOT / "tools" / "backup-pulumi-state.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_installed_restic_has_the_key_commands_the_agent_runs() -> None:
    """The agent's `init` runs restic's key commands (tests/unit/test_backup_scripts.py reads them in the
    pinned release's source); the restic of this machine has them too."""
    if shutil.which("restic") is None:
        pytest.skip("restic is missing: apt-get install -y restic")
    installed = subprocess.run(["restic", "key", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--new-password-file file" in installed and "[list|add|remove|passwd]" in installed
