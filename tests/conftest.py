"""Shared fixtures: the whole program run once per stack under mocks (see tools/offline.py)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.offline import ProgramRun, run_program

STACKS = ("prod", "staging")

# The modules that start real daemons or helper processes (nginx, Postgres, Redis, Vault, the policy
# analyzer, rclone's restic server), besides the lab's: with the lab's (`test_*_lab.py` and every test of
# `lab_session`) they are marked `daemon`. `pytest -m "not daemon"` is the quick loop (benchmarks/suite_speed.py times it).
DAEMON_MODULES = frozenset({
    "test_backup_password_rotation.py",
    "test_edge_real.py",
    "test_guardrails.py",
    "test_hostkeys.py",
    "test_lab.py",
    "test_postgres_major.py",
    "test_rotation.py",
    "test_secret_files_real.py",
    "test_sentry_proxy.py",
    "test_vault_restore.py",
    "test_vault_server.py",
})

# The slowest modules, slowest first (the whole suite as root with --durations, 2026-11-30): the
# backups drills some 350 s, the restore drills, the ACME, swarm and firewall labs 60-170 s each.
SLOWEST_MODULES = ("test_backups_lab.py", "test_restores_lab.py", "test_acme_lab.py", "test_swarm_lab.py", "test_firewall_lab.py")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pytest.ini): twice the CPUs when the daemon tests run, one per CPU for the quick loop.
    The lab and daemon tests spend most of their time waiting (for dockerd, sshd, restic, the drills'
    polling): on two workers the full suite used a third of two cores, and the backups lab alone bounded
    its wall time. Four workers overlap that waiting (CI: 624 s of pytest on 2 workers, 390 s on 4, same
    machine and commit). The quick loop is CPU-bound Python: more workers than CPUs only add start-ups."""
    cpus = os.cpu_count() or 1
    return cpus if "not daemon" in (config.option.markexpr or "") else 2 * cpus


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the daemon tests, and put the slow modules first: those of ``SLOWEST_MODULES``, then the
    other lab modules, then the other daemons', then the rest, each by its number of tests.
    pytest-xdist hands each worker one module at a time in this order (pytest.ini: --dist loadfile
    --no-loadscope-reorder), so the long lab modules start at once and the quick ones fill in at the
    end, where a long module last would leave the other worker idle."""
    for item in items:
        name = item.path.name
        fixtures = getattr(item, "fixturenames", ())
        if name in DAEMON_MODULES or name.endswith("_lab.py") or "lab_session" in fixtures:
            item.add_marker(pytest.mark.daemon)
    tests = Counter(item.path for item in items)
    daemon = {item.path for item in items if item.get_closest_marker("daemon")}

    def cost_rank(item: pytest.Item) -> tuple[int, int, int, str]:
        name = item.path.name
        measured = SLOWEST_MODULES.index(name) if name in SLOWEST_MODULES else len(SLOWEST_MODULES)
        kind = 0 if name.endswith("_lab.py") else 1 if item.path in daemon else 2
        return measured, kind, -tests[item.path], str(item.path)

    items.sort(key=cost_rank)


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
