"""Prints how long the lab takes: first `up`, a second `up` (nothing to do), and `down`, per host count.

Run as root: `venv/bin/python -m benchmarks.lab_up [COUNT ...]` (default 3 and 6 hosts).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from components.config import SERVER_NAMES
from lab import Lab, free_subnet, machine_lock


def measure(count: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        with machine_lock():
            lab = Lab(prefix=f"b{os.getpid()}", subnet=free_subnet(), state_dir=Path(tmp) / "state", timeout=120)
            names = list(SERVER_NAMES[:count]) + [f"extra{i}" for i in range(count - len(SERVER_NAMES))]
            started = time.monotonic()
            try:
                lab.up(names)
                first = time.monotonic() - started
            except BaseException:
                lab.down()
                raise
        started = time.monotonic()
        lab.up(names)
        again = time.monotonic() - started
        started = time.monotonic()
        lab.down()
        return first, again, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lab_up", description=__doc__.split("\n")[0])
    parser.add_argument("counts", nargs="*", type=int, default=[3, 6], metavar="COUNT", help="host counts to measure")
    counts = parser.parse_args().counts
    print(f"{'hosts':>5} {'up (s)':>8} {'up again (s)':>13} {'down (s)':>9}")
    for count in counts:
        first, again, down = measure(count)
        print(f"{count:>5} {first:>8.1f} {again:>13.1f} {down:>9.1f}")


if __name__ == "__main__":
    main()
