"""Shared fixtures: the whole program run once per stack under mocks (see tools/offline.py and
tests/support/program_runs.py: one run per distinct configuration per test process)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Optional

import pytest

from tests.support import real_tools
from tests.support.program_runs import program_run
from tools.offline import ProgramRun

STACKS = ("prod", "staging")

# The tiers are the folders: tests/unit/ needs no daemon and starts no real tool (the quick loop,
# `pytest -m "not daemon"`, which benchmarks/suite_speed.py times); tests/tools/ runs the real tools
# (tests/support/real_tools.py: ruff, mypy, shellcheck, shfmt, restic) and the README's commands in
# interpreters of their own; tests/daemons/ starts real daemons and helper processes (nginx, Postgres, OpenBao, restic,
# rclone, the policy analyzer); tests/lab/ runs on lab machines (the shared `lab_session` or a lab of
# its own). Every test outside tests/unit/ is marked `daemon`; the tiers run in this order, slowest first.
TIERS = ("lab", "daemons", "tools", "unit")
QUICK_TIER = "unit"

# The slowest lab modules, slowest first (the whole suite as root with --durations, 2026-11-30): the
# backups drills some 350 s, the restore drills, the ACME, swarm and firewall labs 60-170 s each.
SLOWEST_MODULES = ("test_backups_lab.py", "test_restores_lab.py", "test_acme_lab.py", "test_swarm_lab.py", "test_firewall_lab.py")
# The quick tier's modules of most CPU, most first (their whole-program runs; 2026-12-06, 2 workers):
# each 2.5-8 s, some with a handful of tests, which by their number of tests would come last and
# leave the other worker idle while they run.
SLOWEST_QUICK_MODULES = (
    "test_vault.py", "test_config_kinds.py", "test_rehearsal.py", "test_config.py", "test_firewall.py",
    "test_observability.py", "test_lab_stack.py", "test_swarm.py", "test_mirror.py", "test_hosts.py", "test_acme.py",
)

TESTS = Path(__file__).resolve().parent


def tier(item: pytest.Item) -> str:
    """The tier of a test: the folder under tests/ that holds its module."""
    folder = item.path.resolve().relative_to(TESTS).parts[0]
    if folder not in TIERS:
        raise pytest.UsageError(f"{item.nodeid}: a test module lives in one of the tiers' folders tests/{{{','.join(TIERS)}}}/")
    return folder


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pytest.ini): twice the CPUs when the daemon tests run, one per CPU for the quick loop.
    The lab and daemon tests spend most of their time waiting (for dockerd, sshd, restic, the drills'
    polling): on two workers the full suite used a third of two cores, and the backups lab alone bounded
    its wall time. Four workers overlap that waiting (CI: 624 s of pytest on 2 workers, 390 s on 4, same
    machine and commit). The quick loop is CPU-bound Python: more workers than CPUs only add start-ups."""
    cpus = os.cpu_count() or 1
    return cpus if "not daemon" in (config.option.markexpr or "") else 2 * cpus


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test outside the quick tier `daemon`, and put the slow modules first: those of
    ``SLOWEST_MODULES``, then the tiers in the order of ``TIERS``, each module by its number of tests
    (in the quick tier, those of ``SLOWEST_QUICK_MODULES`` first).
    pytest-xdist hands each worker one module at a time in this order (pytest.ini: --dist loadfile
    --no-loadscope-reorder), so the long lab modules start at once and the quick ones fill in at the
    end, where a long module last would leave the other worker idle."""
    tiers = {item: tier(item) for item in items}
    for item, folder in tiers.items():
        if "lab_session" in getattr(item, "fixturenames", ()) and folder != "lab":
            raise pytest.UsageError(f"{item.nodeid}: a test of the lab machines (lab_session) lives in tests/lab/")
        if folder != QUICK_TIER:
            item.add_marker(pytest.mark.daemon)
    tests = Counter(item.path for item in items)

    def rank(name: str, measured: tuple[str, ...]) -> int:
        return measured.index(name) if name in measured else len(measured)

    def cost_rank(item: pytest.Item) -> tuple[int, int, int, int, str]:
        name, folder = item.path.name, tiers[item]
        quick = rank(name, SLOWEST_QUICK_MODULES) if folder == QUICK_TIER else 0
        return rank(name, SLOWEST_MODULES), TIERS.index(folder), quick, -tests[item.path], str(item.path)

    items.sort(key=cost_rank)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]) -> Generator[None, object, object]:
    """A test of the quick tier that starts a real tool (tests/support/real_tools.py) fails: it belongs
    in tests/tools/."""
    if tier(item) != QUICK_TIER:
        return (yield)
    with real_tools.refused():
        return (yield)


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
    results = {stack: program_run(stack) for stack in STACKS}
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

from tests.support.lab_fixture import lab_agent, lab_session  # noqa: E402,F401  (the real-hosts lab, once per session; its key in an agent)
from tests.support.skip_policy import pytest_runtest_makereport, pytest_terminal_summary  # noqa: E402,F401  (skips fail in CI)
