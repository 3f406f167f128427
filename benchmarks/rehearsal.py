"""Prints how long `python -m lab rehearse` takes to deploy the lab stack on six fresh lab machines, per server
(from its first operation's start to its last one's end) and in all, and how long a second run with nothing
changed takes.

Run as root: `venv/bin/python -m benchmarks.rehearsal`.
"""

from __future__ import annotations

import argparse
import sys

from lab.rehearsal import fresh_lab

from .report import figure


def main() -> int:
    argparse.ArgumentParser(prog="python -m benchmarks.rehearsal", description=__doc__.split("\n")[0]).parse_args()
    with fresh_lab("q") as lab:
        for run in ("fresh deploy", "second run, nothing changed"):
            rehearsal = lab.rehearse()
            if rehearsal.failed():
                print(rehearsal.report(), file=sys.stderr)
                return 1
            figure(f"rehearsal: {run}", rehearsal.seconds, "s", f"{len(rehearsal.operations)} registrations")
            if run == "fresh deploy":
                for server, (first, last) in sorted(rehearsal.server_spans().items()):
                    figure(f"rehearsal: fresh deploy on {server}", last - first, "s", f"from {first:.1f} s to {last:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
