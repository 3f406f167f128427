"""Prints how long three lab hosts take to become a swarm: through the program's scripts (taken from
the program under mocks and run as the engine would, see lab/swarm.py) against the bare
`docker swarm init` / `join-token` / `join` commands over the same SSH, and the ratio of the two; then
against the bare commands that also set the node labels the program sets (`docker node update` on the
master, the same end state). Also the program's second run (everything already in place) and the
removal of one worker.

Run as root: `venv/bin/python -m benchmarks.swarm_converge [ROUNDS]` (default 10: a swarm init takes either about
half a second or about one second, on both sides alike, so a few rounds decide little).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from benchmarks.report import figure
from lab import LabHost, ssh_command, temporary_lab
from lab.swarm import SWARM_HOSTS, Outcome, SwarmScripts, lab_program, nodes, reset, staging_swarm


def _ssh(host: LabHost, command: str) -> str:
    result = subprocess.run(ssh_command(host, command), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{host.name}: {command}: {result.stderr}")
    return result.stdout.strip()


def bare(hosts: dict[str, LabHost], labels: dict[str, dict[str, str]]) -> dict[str, float]:
    """The hand-run steps of the seed, each timed: init on the master, read the token, both workers join;
    then, in one more session on the master, each node's ``labels`` (a node's labels can only be set on
    a manager, once the node has joined)."""
    master = hosts["swarm-master"]
    stages: dict[str, float] = {}
    started = time.monotonic()
    _ssh(master, f"docker swarm init --advertise-addr {master.address}")
    stages["init"] = time.monotonic() - started
    token = _ssh(master, "docker swarm join-token -q worker")
    stages["join-token"] = time.monotonic() - started - sum(stages.values())
    with ThreadPoolExecutor() as pool:
        list(pool.map(lambda w: _ssh(hosts[w], f"docker swarm join --token {token} {master.address}:2377"),
                      ("swarm-node2", "swarm-node3")))
    stages["2 joins"] = time.monotonic() - started - sum(stages.values())
    _ssh(master, " && ".join(
        "docker node update " + " ".join(f"--label-add {shlex.quote(f'{k}={v}')}" for k, v in sorted(node.items()))
        + f" {shlex.quote(name)}"
        for name, node in sorted(labels.items())
    ))
    stages["node labels"] = time.monotonic() - started - sum(stages.values())
    return stages


def bare_removal(hosts: dict[str, LabHost], worker: str) -> float:
    """A worker's removal by hand: drain it on the master, leave on the worker, remove its entry."""
    master = hosts["swarm-master"]
    started = time.monotonic()
    _ssh(master, f"docker node update --availability drain {shlex.quote(worker)}")
    _ssh(hosts[worker], "docker swarm leave")
    _ssh(master, f"docker node rm --force {shlex.quote(worker)}")
    return time.monotonic() - started


def timed(action: Callable[[], list[Outcome]]) -> tuple[float, list[Outcome]]:
    started = time.monotonic()
    outcomes = action()
    failed = [o for o in outcomes if o.returncode != 0]
    if failed:
        raise RuntimeError(f"{failed[0].name}: {failed[0].stderr}")
    return time.monotonic() - started, outcomes


def wave_seconds(scripts: SwarmScripts, outcomes: list[Outcome]) -> dict[str, float]:
    """Each wave of the converge (the engine's parallel batches) by its steps' names, and its longest step."""
    seconds = {o.name: o.seconds for o in outcomes}
    return {
        " + ".join(r.name.removeprefix("swarm-").removesuffix("-swarm") for r in wave): max(seconds[r.name] for r in wave)
        for wave in scripts.waves()
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.swarm_converge", description=__doc__.split("\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=10, help="rounds to measure (default 10)")
    rounds = parser.parse_args().rounds
    settings = {**staging_swarm(), "registryLogin": False}
    with temporary_lab(SWARM_HOSTS, "b") as (_, hosts):
        scripts = SwarmScripts(lab_program(hosts, {"swarm": settings}), hosts)
        rows: dict[str, list[float]] = {"bare": [], "bare labelled": [], "program": [], "again": [], "remove": [], "bare remove": []}
        stages: dict[str, list[float]] = {}
        # The bare path sets the labels the program sets, read from a swarm it built (not counted).
        reset(hosts.values())
        timed(scripts.converge)
        labels = {name: node["labels"] for name, node in nodes(hosts["swarm-master"]).items()}

        def program() -> None:
            reset(hosts.values())
            elapsed, outcomes = timed(scripts.converge)
            rows["program"].append(elapsed)
            for wave, seconds in wave_seconds(scripts, outcomes).items():
                stages.setdefault(f"program: {wave}", []).append(seconds)
            rows["again"].append(timed(scripts.converge)[0])
            rows["remove"].append(timed(lambda: scripts.remove(scripts.commands_of("swarm-node3")))[0])

        def by_hand() -> None:
            reset(hosts.values())
            for stage, seconds in bare(hosts, labels).items():
                stages.setdefault(f"bare: {stage}", []).append(seconds)
            rows["bare"].append(sum(stages[f"bare: {stage}"][-1] for stage in ("init", "join-token", "2 joins")))
            rows["bare labelled"].append(rows["bare"][-1] + stages["bare: node labels"][-1])
            rows["bare remove"].append(bare_removal(hosts, "swarm-node3"))

        # Each side goes first in every other round, so neither always follows the same state.
        for round_number in range(rounds):
            for side in (program, by_hand) if round_number % 2 else (by_hand, program):
                side()
        reset(hosts.values())
    median = {k: statistics.median(v) for k, v in rows.items()}
    note = f"three lab hosts, median of {rounds}"
    # Where the time goes: each sequential stage, bare and program (a wave's longest step).
    for stage, values in stages.items():
        print(f"  {stage:<60} {statistics.median(values):.2f} s")
    figure("bare init + join-token + 2 joins", median["bare"], "s", note)
    figure("bare, then the same node labels", median["bare labelled"], "s", "one more session on the master")
    figure("program scripts, first converge", median["program"], "s", "incl. labels and the overlay network")
    figure("program scripts, second run", median["again"], "s", "everything in place")
    figure("remove one worker (drain, leave, rm)", median["remove"], "s", "no tasks to move")
    figure("remove one worker by hand (drain, leave, rm)", median["bare remove"], "s", "three sessions, no waiting")
    figure("program / bare", median["program"] / median["bare"], "x", "target 1.3x")
    figure("program / bare with the same labels", median["program"] / median["bare labelled"], "x", "the same end state")


if __name__ == "__main__":
    main()
