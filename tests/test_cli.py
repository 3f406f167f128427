"""Every command a person runs answers --help and refuses a bad argument with a message, never a
traceback; planning any stack leaves no stray file; in CI a skipped test is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from entry_points import run_module

ROOT = Path(__file__).resolve().parents[1]
# Every `python -m` entry point of the repository, with an argument it must refuse cleanly.
ENTRY_POINTS = {
    "tools.plan": ["--stack", "no-such-stack"],
    "tools.guardrails": ["no-such-stack"],
    "tools.promote": ["--from", "no-such-stack", "--to", "prod", "--dry-run"],
    "tools.hostkeys": ["--stack", "no-such-stack"],
    "lab": ["sideways"],
    "benchmarks": ["no-such-benchmark"],
    "benchmarks.plan_speed": ["--runs", "many"],
    "benchmarks.lab_up": ["three"],
    "benchmarks.swarm_converge": ["three"],
    "benchmarks.request_flow": ["--requests", "many"],
    "benchmarks.backup_restore": ["many"],
    "benchmarks.acme_renewal": ["three"],
    "benchmarks.suite_speed": ["--slowest", "many"],
    "benchmarks.rehearsal": ["--runs"],
}


def run(*argv: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_every_entry_point_is_listed() -> None:
    found = {folder if p.stem == "__main__" else f"{folder}.{p.stem}"
             for folder in ("tools", "benchmarks", "lab") for p in (ROOT / folder).glob("*.py")
             if p.stem != "__init__" and "__main__" in p.read_text() and "argparse" in p.read_text()}
    assert found <= set(ENTRY_POINTS), f"add these to ENTRY_POINTS: {sorted(found - set(ENTRY_POINTS))}"


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_help_and_a_bad_argument(module: str) -> None:
    helped = run_module(module, "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m"), helped.stdout + helped.stderr
    refused = run_module(module, *ENTRY_POINTS[module])
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr + refused.stdout, refused.stderr
    assert refused.stderr.strip(), "a refusal says why"


def test_planning_another_stack_leaves_no_tracked_or_untracked_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """From the checkout, as a person runs it (tests/test_docs_commands.py runs the README's plans in
    real interpreters)."""
    monkeypatch.chdir(ROOT)
    before = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    planned = run_module("tools.plan", "--stack", "staging")
    assert planned.returncode == 0, planned.stderr
    assert (ROOT / "build" / "topology-staging.mmd").is_file()
    after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    assert after == before


def test_only_prod_may_redraw_the_readme() -> None:
    refused = run_module("tools.plan", "--stack", "staging", "--write-readme")
    assert refused.returncode == 2 and "refuses stack 'staging'" in refused.stderr


def test_a_skip_is_a_failure_in_ci_only(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from skip_policy import pytest_runtest_makereport, pytest_terminal_summary\n")
    (tmp_path / "test_skips.py").write_text("import pytest\n\ndef test_needs_a_tool():\n    pytest.skip('frobnicator missing')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(ROOT / "tests")}
    # A basetemp of its own: a child session with the default one prunes the numbered temporary
    # directories of this session's other workers (pytest keeps three), lab state included.
    child = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "basetemp"), str(tmp_path / "test_skips.py")]
    locally = run(*child, env=env, cwd=tmp_path)
    assert locally.returncode == 0 and "1 skipped" in locally.stdout
    assert "skipped 1 tests: frobnicator missing" in locally.stdout
    in_ci = run(*child, env={**env, "CI": "true"}, cwd=tmp_path)
    assert in_ci.returncode == 1 and "1 failed" in in_ci.stdout
    assert "skipped in CI, where every test must run: Skipped: frobnicator missing" in in_ci.stdout
