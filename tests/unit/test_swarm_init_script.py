"""The rendered swarm-init script, run for real in a shell with a stand-in `docker` on PATH: the address
pool goes to `swarm init`, and an existing swarm's pool is read and warned about, never changed (the
overlay kernel check is tested in tests/unit/test_overlay_kernel.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from components.services.swarm.component import init_script
from components.services.swarm.settings import Swarm

TOOLS = ("cat", "printf", "echo")
# The stand-in logs every call and answers `docker info` from $STATE and $POOL.
DOCKER = """\
echo "$*" >> "$CALLS"
case "$*" in
  *LocalNodeState*) echo "$STATE" ;;
  *NodeAddr*) echo 10.20.0.31 ;;
  *DefaultAddrPool*) echo "$POOL" ;;
  *Cluster.ID*" "*) echo "cluster node" ;;
  *Cluster.ID*) echo cluster ;;
  "swarm join-token"*) echo token ;;
esac
"""


def _run(tmp_path: Path, state: str, pool: str = "", settings: Swarm | None = None) -> tuple[subprocess.CompletedProcess[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found is not None:
            os.symlink(found, bin_dir / tool)
    fake = bin_dir / "docker"
    fake.write_text("#!/bin/sh\n" + DOCKER)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    script = init_script("swarm-master", "10.20.0.31", settings or Swarm.model_validate({"encryptOverlay": False}))
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": str(bin_dir), "CALLS": str(calls), "STATE": state, "POOL": pool},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result, calls.read_text()


def test_a_new_swarm_is_initialised_with_the_configured_pool(tmp_path: Path) -> None:
    settings = Swarm.model_validate({"addressPool": "192.168.64.0/20", "addressPoolMaskLength": 26, "encryptOverlay": False})
    result, calls = _run(tmp_path, "inactive false", settings=settings)
    assert result.returncode == 0, result.stderr
    assert (
        "swarm init --advertise-addr 10.20.0.31 --listen-addr 10.20.0.31:2377"
        " --default-addr-pool 192.168.64.0/20 --default-addr-pool-mask-length 26"
    ) in calls.splitlines()


def test_an_existing_swarm_with_another_pool_is_warned_about_not_changed(tmp_path: Path) -> None:
    result, calls = _run(tmp_path, "active true", pool='["10.0.0.0/8"] 24')
    assert result.returncode == 0, result.stderr
    assert "swarm init" not in calls
    assert 'WARNING: the swarm on swarm-master allocates overlay networks from ["10.0.0.0/8"] 24' in result.stderr
    assert '["10.200.0.0/16"] 24 as swarm.addressPool' in result.stderr
    assert '"clusterId":"cluster"' in result.stdout


def test_an_existing_swarm_with_the_configured_pool_is_quiet(tmp_path: Path) -> None:
    result, calls = _run(tmp_path, "active true", pool='["10.200.0.0/16"] 24')
    assert result.returncode == 0, result.stderr
    assert "swarm init" not in calls
    assert "WARNING" not in result.stderr
