"""Re-measure every figure the README quotes: `venv/bin/python -m benchmarks` (as root: the lab ones
need network namespaces), then paste the printed table into the README's "Measured" section.

Each benchmark runs in its own interpreter, as documented for it alone, and reports its figures through
``benchmarks.report.figure``; the table says when and on what machine they were measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from .report import FIGURES_FILE

ROOT = Path(__file__).resolve().parents[1]
# Module, and the arguments that give the README's figures.
BENCHMARKS: dict[str, list[str]] = {
    "plan_speed": [],
    "lab_up": [],
    "rehearsal": [],
    "swarm_converge": [],
    "request_flow": [],
    "acme_renewal": [],
    "backup_restore": [],
    "suite_speed": [],
}


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
    return f"{os.cpu_count()} cores ({model}), {kib / 1024 / 1024:.0f} GiB, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default all: {', '.join(BENCHMARKS)})")
    names = parser.parse_args().names or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    rows = []
    for name in names:
        with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as figures:
            done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *BENCHMARKS[name]], cwd=ROOT,
                                  env={**os.environ, FIGURES_FILE: figures.name}, check=False)
            if done.returncode != 0:
                print(f"benchmarks: {name} failed (exit {done.returncode}); its figures are left out", file=sys.stderr)
            rows += [(name, json.loads(line)) for line in figures.read().splitlines()]
    print(f"\nMeasured on {datetime.date.today().isoformat()}, {machine()}:\n")
    print("| benchmark | figure | value |")
    print("|---|---|---|")
    for name, row in rows:
        value = f"{row['value']:.2f}" if row["unit"] == "x" else f"{row['value']:.3g}"
        note = f" ({row['note']})" if row["note"] else ""
        print(f"| `{name}` | {row['label']}{note} | {value} {row['unit']} |")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
