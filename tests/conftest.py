"""Shared fixtures: the whole program run once per stack under mocks (see tools/offline.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.offline import ProgramRun, run_program

STACKS = ("prod", "staging")

# The modules that start real daemons or helper processes (nginx, Postgres, Redis, Vault, the policy
# analyzer), besides the lab's: with the lab's (`test_*_lab.py` and every test of `lab_session`) they
# are marked `daemon`. `pytest -m "not daemon"` is the quick loop (benchmarks/test_loop.py times it).
DAEMON_MODULES = frozenset({
    "test_edge_real.py",
    "test_guardrails.py",
    "test_hostkeys.py",
    "test_lab.py",
    "test_postgres_major.py",
    "test_rotation.py",
    "test_secret_files_real.py",
    "test_sentry_proxy.py",
    "test_vault_server.py",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        if name in DAEMON_MODULES or name.endswith("_lab.py") or "lab_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.daemon)


@pytest.fixture(scope="session", autouse=True)
def worker_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Under pytest-xdist each worker runs in a working directory of its own: the program writes files
    relative to it (the Vault CA it hands the provider, .samarth/), and two workers' program runs must
    not overwrite each other's between a write and a test reading it back."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    before = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        yield
    finally:
        os.chdir(before)


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

from lab_fixture import lab_agent, lab_session  # noqa: E402,F401  (the real-hosts lab, once per session; its key in an agent)
from skip_policy import pytest_runtest_makereport, pytest_terminal_summary  # noqa: E402,F401  (skips fail in CI)
