"""Prints how long `python -m lab rehearse` takes to deploy the lab stack on six fresh lab machines, per server
(from its first operation's start to its last one's end) and in all, and how long a second run with nothing
changed takes.

Run as root: `venv/bin/python -m benchmarks.rehearsal`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from components.shared.model import SERVER_NAMES
from lab import hub, temporary_lab
from lab.rehearsal import rehearse
from lab.stack import default_assignments, write_stack_file
from tools.offline import read_stack_values

from .report import figure


def main() -> int:
    argparse.ArgumentParser(prog="python -m benchmarks.rehearsal", description=__doc__.split("\n")[0]).parse_args()
    with temporary_lab(list(SERVER_NAMES), "q") as (lab, _), tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        values, _ = read_stack_values(write_stack_file(lab.hosts(), work / "Pulumi.lab.yaml", pulumi_from=lab.gateway))
        secrets = {"sshPrivateKey": lab.key_path.read_text()}
        # The stack's Docker Hub mirror pulls from the lab's stand-in for Docker Hub: it must answer.
        hub.start(default_assignments(lab.hosts())["application"])
        for run in ("fresh deploy", "second run, nothing changed"):
            rehearsal = rehearse("lab", values, secrets, work / "rehearsal.json", lab.hosts())
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
