"""Prints what issuance and renewal cost on the lab (lab/acme.py: pebble, Debian nginx, lego):
the first run (placeholders to seven certificates), a second run (nothing due), and forced renewals of
every certificate while HTTPS requests run back to back on new connections, with how many failed.

Run as root: `venv/bin/python -m benchmarks.acme_renewal [ROUNDS]` (default 3 forced renewals).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.report import figure
from lab.acme import RequestLoop, Step, acme_lab


def _checked(step: Step, what: str) -> Step:
    if step.returncode != 0:
        raise RuntimeError(f"{what} failed: {step.stderr[-2000:]}")
    return step


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.acme_renewal", description=__doc__.split("\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=3, help="forced renewals to measure (default 3)")
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="acme-bench-") as work, acme_lab(Path(work)) as lab:
        hosts = lab.config.acme_hosts()
        _checked(lab.install(), "install")
        lab.start_nginx()
        _checked(lab.reload(), "nginx reload")
        first = _checked(lab.certificates("renew"), "first issuance")
        second = _checked(lab.certificates("renew"), "second run")
        roots = lab.pebble_roots()
        figure("ACME first run: placeholders to certificates", first.seconds, "s", f"{len(hosts)} names against pebble")
        figure("ACME second run: nothing due", second.seconds, "s", second.stdout.strip())
        durations, sent, failed = [], 0, 0
        for round_ in range(1, rounds + 1):
            with RequestLoop(lab, "registry.samarth.example.org", roots).running() as loop:
                step = _checked(lab.certificates("force-renew"), "forced renewal")
                lab.wait_served("registry.samarth.example.org", roots)
            durations.append(step.seconds)
            sent += loop.sent
            failed += len(loop.failures)
            print(f"forced renewal {round_}: {step.seconds:.1f} s, {loop.sent} HTTPS requests during it, "
                  f"{len(loop.failures)} failed{': ' + '; '.join(loop.failures[:3]) if loop.failures else ''}")
        figure("ACME forced renewal of every name", statistics.median(durations), "s", f"median of {rounds}")
        # The one Nginx container replacement (adding the ACME mounts): how long requests fail.
        with RequestLoop(lab, "registry.samarth.example.org", roots).running() as loop:
            time.sleep(1)
            lab.replace_nginx()
            time.sleep(1)
        outage = (max(loop.failed_at) - min(loop.failed_at)) if loop.failed_at else 0.0
        figure("Nginx container replacement: requests failing for", outage, "s",
               f"{len(loop.failures)} of {loop.sent} requests failed (docker rm -f, run; Debian nginx on the lab)")
        figure("HTTPS requests during the forced renewals", sent, "requests", "new connection each, 4 threads")
        figure("of which failed", failed, "requests")


if __name__ == "__main__":
    main()
