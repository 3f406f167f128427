"""Prints how long `python -m lab rehearse` takes to deploy the lab stack on six fresh lab machines, per server
(from its first operation's start to its last one's end), along the deploy graph's longest chain and in all,
the most SSH sessions it had open on each server at once, how long a second run with nothing changed
takes, and a version bump on the live stack with each replaced container's downtime.

Run as root: `venv/bin/python -m benchmarks.rehearsal`.
"""

from __future__ import annotations

import argparse
import sys

from lab.rehearsal import fresh_lab
from tools.deploy_graph import longest_chain

from .report import figure

# The bump: another Redis pin (the lab serves it as a second image of the same software).
BUMP = {"redis": "redis:7.4.12"}


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
                name = {host.address: host.name for host in lab.lab.hosts()}
                for server, (first, last) in sorted(rehearsal.server_spans().items()):
                    figure(f"rehearsal: fresh deploy on {name[server]}", last - first, "s", f"from {first:.1f} s to {last:.1f} s")
                chain = longest_chain(rehearsal.run)
                seconds = {op.urn: op.seconds for op in rehearsal.operations}
                figure("rehearsal: fresh deploy, the deploy graph's longest chain (its steps' own times)",
                       sum(seconds.get(step.urn, 0.0) for step in chain), "s", f"{len(chain)} steps, {chain[-1].name} last")
                for server, count in sorted(rehearsal.sessions_at_once.items()):
                    figure(f"rehearsal: most SSH sessions at once on {name[server]}", count, "sessions", "remote commands")
        # A version bump on the live stack, as a pin promoted from staging: what it replaces, and how long
        # each replaced container is away (old one removed to new one healthy).
        bumped = lab.rehearse(versions=BUMP)
        if bumped.failed():
            print(bumped.report(), file=sys.stderr)
            return 1
        figure(f"rehearsal: version bump ({', '.join(BUMP.values())})", bumped.seconds, "s",
               f"{sum(op.operation == 'replace' for op in bumped.operations)} replaced")
        for op in bumped.operations:
            if op.operation == "replace" and op.type == "docker:index/container:Container":
                figure(f"rehearsal: downtime of {op.urn.rsplit('::', 1)[1]} in the bump", op.seconds, "s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
