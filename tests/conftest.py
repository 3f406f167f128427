"""Shared fixtures: the whole program run once per stack under mocks (see tools/offline.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.offline import ProgramRun, run_program  # noqa: E402

STACKS = ("prod", "staging")


@pytest.fixture(scope="session")
def runs() -> dict[str, ProgramRun]:
    results = {stack: run_program(stack) for stack in STACKS}
    for stack, result in results.items():
        if result.error is not None:
            raise AssertionError(f"stack {stack} failed under mocks: {result.error}")
    return results


@pytest.fixture(scope="session")
def prod(runs: dict[str, ProgramRun]) -> ProgramRun:
    return runs["prod"]


@pytest.fixture(params=STACKS)
def stack_run(request: pytest.FixtureRequest, runs: dict[str, ProgramRun]) -> ProgramRun:
    return runs[request.param]

from lab_fixture import lab_session  # noqa: E402,F401  (the real-hosts lab, once per session)
from skip_policy import pytest_runtest_makereport, pytest_terminal_summary  # noqa: E402,F401  (skips fail in CI)
