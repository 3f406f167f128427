"""The program runs on Python 3.10 and newer: Ubuntu 22.04's Python, where the seed clones this repository
on the application server. No 3.10 interpreter runs the tests here, so the lint checks against 3.10 (an
API or syntax newer than it fails ruff or mypy), every pinned package must admit 3.10, and the README
and the test command name the same version."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tools.offline import ROOT

OLDEST_PYTHON = (3, 10)
OLDEST = ".".join(map(str, OLDEST_PYTHON))

# Each line uses a name that Python 3.11 added; mypy must refuse every one.
NEWER_NAMES = {
    "import tomllib": "tomllib",
    "from datetime import UTC": "UTC",
    "from enum import StrEnum": "StrEnum",
    "from typing import Self": "Self",
    "import asyncio; asyncio.TaskGroup()": "TaskGroup",
    'ExceptionGroup("", [ValueError()])': "ExceptionGroup",
}


def test_mypy_refuses_names_newer_than_the_oldest_python(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("\n".join(NEWER_NAMES) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), str(probe)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    refused = {line.split(":")[1] for line in result.stdout.splitlines() if ": error:" in line}
    lines = {str(number): name for number, name in enumerate(NEWER_NAMES.values(), start=1)}
    assert refused == set(lines), f"mypy accepted {[lines[n] for n in set(lines) - refused]}:\n{result.stdout}"


def test_ruff_refuses_syntax_newer_than_the_oldest_python() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--stdin-filename", "probe.py", "-"],
        cwd=ROOT,
        input="try:\n    pass\nexcept* ValueError:\n    pass\n",
        capture_output=True,
        text=True,
    )
    assert f"Cannot use `except*` on Python {OLDEST}" in result.stdout, result.stdout + result.stderr


def test_ruff_does_not_rewrite_to_names_newer_than_the_oldest_python() -> None:
    """pyupgrade's rules follow the target: at 3.11 ruff asks for ``datetime.UTC``, which 3.10 lacks."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "UP", "--stdin-filename", "probe.py", "-"],
        cwd=ROOT,
        input="import datetime\n\nprint(datetime.timezone.utc)\n",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_pinned_package_supports_the_oldest_python() -> None:
    """The pins in requirements.txt cannot move, so each must admit the oldest Python. What they pull in
    is not pinned: pip picks, on each interpreter, the newest release that admits it (some of those picked
    here need 3.11, their earlier releases 3.10)."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    pins = [Requirement(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert len(pins) > 10
    refusing = set()
    for pin in pins:
        distribution = metadata.distribution(pin.name)
        assert pin.specifier.contains(distribution.version), f"{pin} but {distribution.version} is installed"
        requires_python = distribution.metadata["Requires-Python"] or ""
        if not SpecifierSet(requires_python).contains(OLDEST):
            refusing.add(f"{pin} (Requires-Python {requires_python})")
    assert not refusing, f"these need a Python newer than {OLDEST}: {sorted(refusing)}"


@pytest.mark.parametrize("path", ["README.md", "tools/test.sh"])
def test_the_docs_and_the_test_command_name_the_oldest_python(path: str) -> None:
    text = (ROOT / path).read_text()
    assert f"Python {OLDEST} or newer" in text
    if path.endswith(".sh"):
        assert f"sys.version_info < {OLDEST_PYTHON}" in text
