"""Prints how long the lab's machines take and what they cost: a first `up`, a second `up` (nothing to do),
a reboot of one machine, and `down`, per machine count; then each machine's memory after boot.

Run as root: `venv/bin/python -m benchmarks.lab_up [COUNT ...]` (default 3 and 6 machines). Says first whether
the machine image was built already (warm) or is built by this run (cold: its time is then in the first `up`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from components.shared.model import SERVER_NAMES
from lab import Lab, free_subnet, machine_lock
from lab.core import image_cache_state
from lab.machines import CGROUP_PARENT, CGROUP_ROOT, cgroup_pids

from .report import figure


def memory_mib(machine: str) -> tuple[float, float]:
    """The machine's resident memory and its page cache (MiB), from its memory cgroup."""
    stat = dict(line.split() for line in (CGROUP_ROOT / "memory" / CGROUP_PARENT / machine / "memory.stat").read_text().splitlines())
    return int(stat["total_rss"]) / 2**20, int(stat["total_cache"]) / 2**20


def measure(count: int) -> tuple[float, float, float, float, dict[str, tuple[float, float, int]]]:
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        with machine_lock():
            lab = Lab(prefix=f"b{os.getpid()}", subnet=free_subnet(), state_dir=Path(tmp) / "state", timeout=300)
            names = list(SERVER_NAMES[:count]) + [f"extra{i}" for i in range(count - len(SERVER_NAMES))]
            started = time.monotonic()
            try:
                lab.up(names)
                first = time.monotonic() - started
            except BaseException:
                lab.down()
                raise
        try:
            started = time.monotonic()
            lab.up(names)
            again = time.monotonic() - started
            started = time.monotonic()
            lab.reboot(names[0])
            reboot = time.monotonic() - started
            time.sleep(5)  # let each machine's boot settle before reading its memory
            costs = {}
            for name in names:
                machine = lab.machine(name)
                rss, cache = memory_mib(machine.name)
                costs[name] = (rss, cache, len(cgroup_pids(machine.name)))
        finally:
            started = time.monotonic()
            lab.down()
        return first, again, reboot, time.monotonic() - started, costs


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lab_up", description=__doc__.split("\n")[0])
    parser.add_argument("counts", nargs="*", type=int, default=[3, 6], metavar="COUNT", help="machine counts to measure")
    counts = parser.parse_args().counts
    cache = image_cache_state()
    print(f"machine image cache: {cache}")
    last: dict[str, tuple[float, float, int]] = {}
    for count in counts:
        first, again, reboot, down, last = measure(count)
        note = f"{count} machines, image cache {cache}" if count == counts[0] else f"{count} machines"
        figure("lab up (booted, SSH and dockerd answering)", first, "s", note)
        figure("lab up again (nothing to do)", again, "s", f"{count} machines")
        figure("reboot one machine until it answers again", reboot, "s", f"{count} machines")
        figure("lab down", down, "s", f"{count} machines")
    rss = sorted(cost[0] for cost in last.values())
    processes = sorted(cost[2] for cost in last.values())
    figure("memory per machine, booted with Docker, idle (median)", statistics.median(rss), "MiB",
           f"{len(rss)} machines, {min(rss):.0f}-{max(rss):.0f} MiB, {processes[len(processes) // 2]} processes each (median)")
    print(f"\nper machine, {len(last)} booted with Docker and idle:")
    print(f"{'machine':<14} {'memory (MiB)':>13} {'page cache (MiB)':>17} {'processes':>10}")
    for name, (machine_rss, page_cache, count) in last.items():
        print(f"{name:<14} {machine_rss:>13.1f} {page_cache:>17.1f} {count:>10}")


if __name__ == "__main__":
    main()
