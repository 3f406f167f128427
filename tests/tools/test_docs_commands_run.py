"""The README's and docs' commands that need neither real servers nor the Pulumi CLI (the plan, the
guardrails, a dry-run promotion) run for real, each in an interpreter of its own from the checkout, and
succeed. (That every command's modules answer --help and its paths exist: tests/unit/test_docs_commands.py.)"""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from tests.unit.test_docs_commands import ALL, ROOT, RUNNABLE


@pytest.mark.parametrize(("page", "command"), [(p, c) for p, c in ALL if RUNNABLE.match(c)])
def test_offline_commands_run(page: str, command: str) -> None:
    argv = shlex.split(command)
    argv[0] = sys.executable
    if argv[2:4] == ["tools.plan", "--stack"]:
        argv += ["--diagram", "/dev/null"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{page}: `{command}` failed:\n{done.stderr[-2000:]}"
