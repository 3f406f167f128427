"""How long the offline plan takes next to importing the SDKs it needs: `venv/bin/python -m benchmarks.plan_speed`.

Every figure comes from a fresh interpreter (imports are cached per process); the best of --runs
is printed, as the machine's other work only ever adds time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORT_SDKS = "import pulumi, pulumi.runtime, pulumi_docker, pulumi_command, pulumi_vault, pulumi_random, pulumi_minio"
# Inside one process: the SDK imports, then the program under mocks, then the plan text and diagram.
PHASES = """
import json, time
t0 = time.perf_counter()
import pulumi, pulumi.runtime, pulumi_docker, pulumi_command, pulumi_vault, pulumi_random, pulumi_minio
from tools import plan
t1 = time.perf_counter()
topology = plan.build({stack!r})
t2 = time.perf_counter()
plan.render_plan(topology); plan.render_diagram(topology)
t3 = time.perf_counter()
print(json.dumps({{"imports": t1 - t0, "program": t2 - t1, "render": t3 - t2, "resources": len(topology.run.registrations)}}))
"""


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plan_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    sdks = min(wall([python, "-c", IMPORT_SDKS]) for _ in range(args.runs))
    command = [python, "-m", "tools.plan", "--stack", args.stack, "--diagram", "/dev/null"]
    plan = min(wall(command) for _ in range(args.runs))
    phases = [
        json.loads(subprocess.run([python, "-c", PHASES.format(stack=args.stack)], cwd=ROOT, check=True, capture_output=True, text=True).stdout)
        for _ in range(args.runs)
    ]
    best = min(phases, key=lambda p: p["program"] + p["render"])
    print(f"import the SDKs (fresh python)            {sdks:6.2f} s")
    print(f"python -m tools.plan --stack {args.stack:<12} {plan:6.2f} s  ({plan / sdks:.1f}x the SDK import)")
    print(f"  of which, in process: imports {best['imports']:.2f} s, program under mocks {best['program']:.2f} s "
          f"({best['resources']} resources), plan and diagram {best['render']:.3f} s")


if __name__ == "__main__":
    main()
