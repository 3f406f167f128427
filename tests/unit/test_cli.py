"""Every command a person runs answers --help and refuses a bad argument with a message, never a
traceback; planning any stack leaves no stray file; in CI a skipped test is a failure."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import skip_policy
from tests.support.entry_points import run_module
from tests.support.skip_policy import as_root

ROOT = Path(__file__).resolve().parents[2]
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
    """From the checkout, as a person runs it (tests/tools/test_docs_commands_run.py runs the README's plans in
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


def test_a_skip_is_a_failure_in_ci_only_and_the_run_ends_counting_skips_by_reason(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from tests.support.skip_policy import pytest_runtest_makereport, pytest_terminal_summary\n")
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('n', [1, 2])\ndef test_needs_a_tool(n):\n    pytest.skip('frobnicator missing')\n\n"
        "def test_needs_another():\n    pytest.skip('gadget missing')\n"
    )
    summary = tmp_path / "skipped"
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(ROOT), "SKIPPED_SUMMARY": str(summary)}
    # A basetemp of its own: a child session with the default one prunes the numbered temporary
    # directories of this session's other workers (pytest keeps three), lab state included.
    child = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "basetemp"), str(tmp_path / "test_skips.py")]
    locally = run(*child, env=env, cwd=tmp_path)
    assert locally.returncode == 0 and "3 skipped" in locally.stdout
    line = "skipped 3 tests: frobnicator missing (2); gadget missing (1)"
    assert line in locally.stdout
    assert summary.read_text() == line  # for tools/test.sh to say last
    in_ci = run(*child, env={**env, "CI": "true"}, cwd=tmp_path)
    assert in_ci.returncode == 1 and "3 failed" in in_ci.stdout
    assert "skipped in CI, where every test must run: Skipped: frobnicator missing" in in_ci.stdout
    assert summary.read_text() == ""


def test_as_root_runs_a_program_as_root_for_any_user_and_binds_low_ports_in_a_network_of_its_own(tmp_path: Path) -> None:
    """What tests/support/skip_policy.py promises the tests that need root only over their own files and ports."""
    owned = tmp_path / "file"
    owned.write_text("")
    probe = (
        "import os, socket\n"
        f"os.chown({str(owned)!r}, 0, 0)\n"
        "s = socket.socket()\ns.bind(('0.0.0.0', 80))\n"
        "print(os.geteuid(), os.stat('/proc/self/ns/net').st_ino)\n"
    )
    done = subprocess.run(as_root([sys.executable, "-c", probe], private_network=True), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    uid, network = done.stdout.split()
    assert uid == "0"
    assert int(network) != os.stat("/proc/self/ns/net").st_ino  # not this machine's network: port 80 is free there
    assert owned.stat().st_uid == os.geteuid()  # root of the namespace is this user outside it



def test_as_root_skips_with_the_kernels_reason_where_no_user_namespace_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(skip_policy, "IS_ROOT", False)
    monkeypatch.setattr(skip_policy, "_user_namespace_refused", lambda: "unshare: write failed /proc/self/uid_map: Operation not permitted")
    with pytest.raises(pytest.skip.Exception, match=r"needs root, or a user namespace .*uid_map: Operation not permitted"):
        skip_policy.as_root(["true"])

def _mentions(node: ast.AST, *attributes: str) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr in attributes for n in ast.walk(node))


def _skips_on_the_user_id(tree: ast.AST) -> list[int]:
    """Lines of ``pytest.skip`` under an ``if`` on the user id, and of ``skipif`` conditions on it."""

    def decides(node: ast.AST) -> bool:
        if isinstance(node, ast.If):
            return _mentions(node.test, "geteuid", "getuid") and any(_mentions(s, "skip", "skipif") for s in node.body)
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "skipif"
                and _mentions(node, "geteuid", "getuid"))

    return [node.lineno for node in ast.walk(tree) if decides(node)]  # type: ignore[attr-defined]


def test_a_test_skips_for_want_of_root_only_through_the_skip_policy() -> None:
    """Whether a test needs the machine's root is decided in tests/support/skip_policy.py (``needs_root``, or
    ``as_root`` for root over the test's own files), so no test skips as another user that could run."""
    found = {
        f"{path.name}:{line}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path.name != "skip_policy.py"
        for line in _skips_on_the_user_id(ast.parse(path.read_text()))
    }
    assert not found, f"skips decided on the user id outside tests/support/skip_policy.py: {sorted(found)}"
    assert _skips_on_the_user_id(ast.parse("if os.geteuid() != 0:\n    pytest.skip('root')\n")) == [1]
    assert _skips_on_the_user_id(ast.parse("@pytest.mark.skipif(os.getuid() != 0, reason='root')\ndef test(): pass\n")) == [1]
