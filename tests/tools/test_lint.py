"""The Python stays ruff- and mypy-clean with the project's configuration (pyproject.toml)."""

from __future__ import annotations

import re
import subprocess
import sys

from tools.offline import ROOT


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True)


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


# Where sys.path is edited, and why nothing else would do. The policy host runs policies/__main__.py
# with runpy.run_path, which does not put the pack's directory on sys.path for its `import rules`.
SYS_PATH_EDIT = re.compile(r"^\s*sys\.path\.(insert|append|extend)\(", re.M)
SYS_PATH_EDITS = {"policies/__main__.py"}


def test_sys_path_is_edited_only_where_justified() -> None:
    edited = {
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if not {"venv", ".git"} & set(path.relative_to(ROOT).parts) and SYS_PATH_EDIT.search(path.read_text())
    }
    assert edited == SYS_PATH_EDITS
