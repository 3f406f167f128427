"""The Host preflight script, run for real in a shell with a stand-in `docker` on PATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components.platform.host.component import preflight_script
from components.platform.host.settings import Server

TOOLS = ("awk", "nproc", "id", "cat", "df")
# `docker version` prints the version; `docker info` names the data root (here /, a real filesystem).
DOCKER = 'case "$1" in info) echo "${DATA_ROOT:-/}" ;; *) echo "27.5.1" ;; esac'


def _bin(tmp_path: Path, docker: str | None) -> Path:
    """A PATH with only the basic tools and, when given, a fake docker script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, f"{tool} is missing"
        os.symlink(found, bin_dir / tool)
    if docker is not None:
        fake = bin_dir / "docker"
        fake.write_text("#!/bin/sh\n" + docker)
        fake.chmod(0o755)
    return bin_dir


def _run(tmp_path: Path, server: Server, docker: str | None, warn_percent: int = 99) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", preflight_script("db1", server, warn_percent)],
        env={"PATH": str(_bin(tmp_path, docker))},
        capture_output=True,
        text=True,
        timeout=30,
    )


def _server(memory_mib: int = 512, cpus: int = 1) -> Server:
    return Server.model_validate({"privateIp": "10.20.0.21", "memoryMib": memory_mib, "cpus": cpus})


def test_reports_docker_version_memory_and_cpus(tmp_path: Path) -> None:
    result = _run(tmp_path, _server(), DOCKER)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["dockerVersion"] == "27.5.1"
    assert facts["cpus"] == os.cpu_count()
    assert facts["memoryMib"] > 512


def test_fails_clearly_when_docker_is_missing(tmp_path: Path) -> None:
    result = _run(tmp_path, _server(), None)
    assert result.returncode != 0
    assert "docker is not installed on db1" in result.stderr


def test_fails_clearly_when_the_daemon_does_not_answer(tmp_path: Path) -> None:
    result = _run(tmp_path, _server(), "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    assert result.returncode != 0
    assert "its daemon does not answer" in result.stderr


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (_server(memory_mib=64 * 1024 * 1024), "config servers.db1.memoryMib declares 67108864"),
        (_server(cpus=4096), "config servers.db1.cpus declares 4096"),
    ],
)
def test_fails_when_the_machine_is_smaller_than_declared(tmp_path: Path, server: Server, message: str) -> None:
    result = _run(tmp_path, server, DOCKER)
    assert result.returncode != 0
    assert message in result.stderr


def _used_percent(path: str) -> int:
    usage = shutil.disk_usage(path)
    return int(usage.used * 100 / (usage.used + usage.free)) if usage.used else 0


def test_warns_when_the_data_root_filesystem_is_fuller_than_the_threshold(tmp_path: Path) -> None:
    used = _used_percent("/")
    assert used >= 1, "this test needs a filesystem with something on it"
    result = _run(tmp_path, _server(), DOCKER, warn_percent=max(used - 1, 1) if used > 1 else 1)
    assert result.returncode == 0, result.stderr
    assert "warning: the filesystem of Docker's data root / on db1 is" in result.stderr
    assert "logs.dataRootWarnPercent" in result.stderr
    facts = json.loads(result.stdout)
    assert facts["dataRoot"] == "/" and 0 < facts["dataRootUsedPercent"] <= 100


def test_no_warning_below_the_threshold(tmp_path: Path) -> None:
    result = _run(tmp_path, _server(), DOCKER, warn_percent=99)
    assert result.returncode == 0, result.stderr
    if _used_percent("/") < 98:
        assert "warning" not in result.stderr
