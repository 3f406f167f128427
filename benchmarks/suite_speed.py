"""How long the test loop takes: `venv/bin/python -m benchmarks.suite_speed [--full]`.

(Not named test_*.py: pytest would take it for a test module.)

Runs the tests that need no real daemon (`pytest -m "not daemon"`, with pytest.ini's workers) once and
prints its wall time, its CPU time (user + system of pytest, its workers and every program they
start), its test count and its slowest tests. `--full` then runs the whole suite as well (as root:
the lab and daemon tests need it; minutes). The load average is printed with each run: on a shared
machine the wall time follows the other work, the CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.report import FIGURES_FILE, figure

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["-m", "not daemon"]
DURATION = re.compile(r"^\s*([\d.]+)s (call|setup|teardown)\s+(.+)$")
OUTCOME = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected)")


@dataclass
class Loop:
    wall: float
    cpu: float
    counts: dict[str, int]
    slowest: list[tuple[float, str]]
    load: str
    exit_code: int


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run_tests(selection: list[str], slowest: int, workers: str | None) -> Loop:
    """One pytest run from the repository root, timed from outside."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--durations={slowest}", *selection]
    if workers is not None:
        argv += ["-n", workers]
    # The tests must not append to a figures file of `python -m benchmarks`.
    env = {key: value for key, value in os.environ.items() if key != FIGURES_FILE}
    load = load_average()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = done.stdout.splitlines()
    counts = {kind.rstrip("s") if kind.startswith("error") else kind: int(number)
              for number, kind in OUTCOME.findall(lines[-1] if lines else "")}
    durations = [(float(m.group(1)), f"{m.group(3)} ({m.group(2)})") for m in map(DURATION.match, lines) if m]
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
    return Loop(wall, cpu, counts, sorted(durations, reverse=True)[:slowest], f"{load} → {load_average()}", done.returncode)


def report(name: str, loop: Loop) -> None:
    ran = sum(loop.counts.get(kind, 0) for kind in ("passed", "failed", "error", "skipped"))
    note = f"load {loop.load}" + (f"; {loop.counts.get('failed', 0)} failed" if loop.exit_code else "")
    figure(f"{name}: tests", ran, "tests")
    figure(f"{name}: wall", loop.wall, "s", note)
    figure(f"{name}: CPU (user + system)", loop.cpu, "s")
    print(f"slowest of {name}:")
    for seconds, test in loop.slowest:
        print(f"  {seconds:6.2f} s  {test}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="also run the whole suite (as root; minutes)")
    parser.add_argument("--slowest", type=int, default=10, help="how many of the slowest tests to list (default 10)")
    parser.add_argument("--workers", help="pytest-xdist workers (default: pytest.ini's, one per CPU)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load average {load_average()}")
    quick = run_tests(QUICK, args.slowest, args.workers)
    report("tests without daemons", quick)
    status = quick.exit_code
    if args.full:
        full = run_tests([], args.slowest, args.workers)
        report("whole suite", full)
        status = status or full.exit_code
    return status


if __name__ == "__main__":
    sys.exit(main())
