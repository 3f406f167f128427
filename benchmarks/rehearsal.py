"""Prints how long `python -m lab rehearse` takes to deploy the lab stack on six fresh lab machines, per server
(from its first operation's start to its last one's end), along the deploy graph's longest chain and in all,
the most SSH sessions it had open on each server at once, and how long a second run with nothing changed
takes.

Run as root: `venv/bin/python -m benchmarks.rehearsal`.
"""

from __future__ import annotations

import argparse
import sys

from lab.rehearsal import fresh_lab
from tools.deploy_graph import longest_chain

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
                chain = longest_chain(rehearsal.run)
                seconds = {op.urn: op.seconds for op in rehearsal.operations}
                figure("rehearsal: fresh deploy, the deploy graph's longest chain (its steps' own times)",
                       sum(seconds.get(step.urn, 0.0) for step in chain), "s", f"{len(chain)} steps, {chain[-1].name} last")
                for server, count in sorted(rehearsal.sessions_at_once.items()):
                    figure(f"rehearsal: most SSH sessions at once on {server}", count, "sessions", "remote commands")
    return 0


if __name__ == "__main__":
    sys.exit(main())
