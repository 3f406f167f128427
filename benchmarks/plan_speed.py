"""How long the offline plan takes next to importing the SDKs it needs: `venv/bin/python -m benchmarks.plan_speed`.

Every figure comes from a fresh interpreter (imports are cached per process); the best of --runs
is printed, as the machine's other work only ever adds time. Wall time and CPU time (user + system)
both: on a shared machine the CPU time is the steadier of the two.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.report import figure

ROOT = Path(__file__).resolve().parents[1]
IMPORT_SDKS = "import pulumi, pulumi.runtime, pulumi_docker, pulumi_command, pulumi_vault, pulumi_random, pulumi_minio, pulumi_tls"
# Inside one process: the SDK imports, then the program under mocks, then the plan text and diagram.
PHASES = """
import json, time
t0 = time.perf_counter()
import pulumi, pulumi.runtime, pulumi_docker, pulumi_command, pulumi_vault, pulumi_random, pulumi_minio, pulumi_tls
from tools import plan
t1 = time.perf_counter()
topology = plan.build({stack!r})
t2 = time.perf_counter()
plan.render_plan(topology); plan.render_diagram(topology)
t3 = time.perf_counter()
print(json.dumps({{"imports": t1 - t0, "program": t2 - t1, "render": t3 - t2, "resources": len(topology.run.registrations)}}))
"""


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plan_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    sdk_runs = [timed([python, "-c", IMPORT_SDKS]) for _ in range(args.runs)]
    command = [python, "-m", "tools.plan", "--stack", args.stack, "--diagram", "/dev/null"]
    plan_runs = [timed(command) for _ in range(args.runs)]
    sdks, plan = min(w for w, _ in sdk_runs), min(w for w, _ in plan_runs)
    sdks_cpu, plan_cpu = min(c for _, c in sdk_runs), min(c for _, c in plan_runs)
    phases = [
        json.loads(subprocess.run([python, "-c", PHASES.format(stack=args.stack)], cwd=ROOT, check=True, capture_output=True, text=True).stdout)
        for _ in range(args.runs)
    ]
    best = min(phases, key=lambda p: p["program"] + p["render"])
    figure("import the SDKs (fresh python)", sdks, "s", f"wall; {sdks_cpu:.2f} s CPU")
    figure(f"python -m tools.plan --stack {args.stack}", plan, "s", f"wall; {plan_cpu:.2f} s CPU")
    figure("plan / SDK import, CPU time", plan_cpu / sdks_cpu, "x", f"wall time {plan / sdks:.2f}x; target 1.5x")
    figure("in process: program under mocks", best["program"], "s", f"{best['resources']} resources")
    figure("in process: plan text and diagram", best["render"], "s")


if __name__ == "__main__":
    main()
