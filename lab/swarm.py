"""Run the swarm component's own scripts against lab hosts, the way the engine would.

The scripts are not copies: they are the ``create``/``delete`` inputs the program registers under mocks
for a stack whose swarm servers are lab hosts. Each runs over real SSH on the host its ``connection``
names, with its ``stdin`` as registered except that the stand-in secrets the mocks produced (the join
tokens) are replaced by the real ones the real init printed, as the engine would pass them. Order is
the engine's: dependencies first on create, dependents first on delete. Used by the lab tests and by
``benchmarks/swarm_converge.py``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from lab import LabHost, docker, ssh_command
from lab.stack import stack_document
from tools.offline import PROJECT, ROOT, ProgramRun, Registration, read_stack_values, reveal, run_program, stack_file

SWARM_HOSTS = ("swarm-master", "swarm-node2", "swarm-node3")
COMMAND = "command:remote:Command"
NETWORK = "docker:index/network:Network"
STAGING = ROOT / "Pulumi.staging.yaml"


def lab_servers(hosts: Mapping[str, LabHost]) -> dict[str, Any]:
    """The lab stack's ``servers`` value (what the labels' declared memory comes from)."""
    return stack_document(dict(hosts), STAGING)["config"]["samarth-infra:servers"]


def staging_swarm() -> dict[str, Any]:
    """Staging's ``swarm`` section as the engine passes it (the program validates an override made of it)."""
    values, _ = read_stack_values(stack_file("staging"))
    return dict(json.loads(values[f"{PROJECT}:swarm"]))


def lab_program(hosts: Mapping[str, LabHost], overrides: Optional[Mapping[str, Any]] = None) -> ProgramRun:
    """The program under mocks for the lab stack (servers on ``hosts``, the rest as staging)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "Pulumi.lab.yaml"
        document = stack_document(dict(hosts), STAGING)
        path.write_text(yaml.safe_dump(document))
        values, _ = read_stack_values(path)
    run = run_program("lab", values=values, overrides=overrides)
    if run.error is not None:
        raise AssertionError(f"the lab stack failed under mocks: {run.error}")
    return run


def _dependency_order(registrations: list[Registration]) -> list[Registration]:
    by_urn = {r.urn: r for r in registrations}
    done: list[Registration] = []
    seen: set[str] = set()

    def visit(registration: Registration) -> None:
        if registration.urn in seen:
            return
        seen.add(registration.urn)
        for urn in registration.dependencies:
            if urn in by_urn:
                visit(by_urn[urn])
        done.append(registration)

    for registration in registrations:
        visit(registration)
    return done


@dataclass
class Outcome:
    name: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0  # the step's own wall time (its SSH session, or the Docker API call)


@dataclass
class SwarmScripts:
    """The swarm's commands of one program run, bound to the lab hosts their connections name."""

    run: ProgramRun
    hosts: Mapping[str, LabHost]
    # Real values of the secrets the mocks stood in for, learnt from the real init's output.
    real_secrets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cluster = self.run.named("samarth:swarm:Cluster", "swarm")
        members = self.run.under(cluster)
        self.commands = _dependency_order([r for r in members if r.type == COMMAND])
        self.networks = [r for r in members if r.type == NETWORK]
        self._urns = {r.urn for r in self.commands + self.networks}
        self._by_address = {h.address: h for h in self.hosts.values()}

    def command(self, name: str) -> Registration:
        return self.run.named(COMMAND, name)

    def host_of(self, registration: Registration) -> LabHost:
        return self._by_address[reveal(registration.inputs["connection"])["host"]]

    def _stdin(self, registration: Registration) -> str:
        text = reveal(registration.inputs.get("stdin")) or ""
        for fake, real in self.real_secrets.items():
            text = text.replace(fake, real)
        return text

    def execute(self, name: str, phase: str = "create", timeout: float = 300) -> Outcome:
        """Run one command's ``phase`` script as the provider does: the script is the SSH session's
        command, ``stdin`` its standard input."""
        registration = self.command(name)
        if not registration.inputs.get(phase):
            # The provider runs nothing (no SSH session) for a phase without a script.
            return Outcome(name, 0, "", "")
        started = time.monotonic()
        result = subprocess.run(
            ssh_command(self.host_of(registration), registration.inputs[phase]),
            input=self._stdin(registration),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if name.endswith("-swarm-init") and phase == "create" and result.returncode == 0:
            fake = json.loads(reveal(registration.outputs["stdout"]))
            real = json.loads(result.stdout)
            self.real_secrets.update({fake[k]: real[k] for k in ("workerToken", "managerToken")})
        return Outcome(name, result.returncode, result.stdout, result.stderr, time.monotonic() - started)

    def waves(self) -> list[list[Registration]]:
        """The commands and the network in the batches the engine can run in parallel: each after its
        dependencies."""
        done: set[str] = set()
        pending = _dependency_order(self.commands + self.networks)
        batches = []
        while pending:
            ready = [r for r in pending if all(d in done or d not in self._urns for d in r.dependencies)]
            batches.append(ready)
            done |= {r.urn for r in ready}
            pending = [r for r in pending if r.urn not in done]
        return batches

    def converge(self) -> list[Outcome]:
        """``pulumi up`` from nothing (or again): every create, dependencies first and independent ones
        in parallel, stopping after the first batch with a failure; the network is created unless the
        master already has it (the engine's state would)."""
        outcomes: list[Outcome] = []
        with ThreadPoolExecutor(max_workers=8) as pool:
            for batch in self.waves():
                results = list(pool.map(self._create, batch))
                outcomes += results
                if any(o.returncode != 0 for o in results):
                    return outcomes
        return outcomes

    def _create(self, registration: Registration) -> Outcome:
        if registration.type == COMMAND:
            return self.execute(registration.name)
        master = self.hosts["swarm-master"]
        inputs = registration.inputs
        started = time.monotonic()
        if docker(master, "network", "inspect", inputs["name"]).returncode == 0:
            return Outcome(registration.name, 0, "", "", time.monotonic() - started)
        argv = ["network", "create", "--driver", inputs["driver"]]
        argv += ["--attachable"] if inputs.get("attachable") else []
        for key, value in sorted((inputs.get("options") or {}).items()):
            argv += ["--opt", f"{key}={value}"]
        for label in inputs.get("labels") or []:
            argv += ["--label", f"{label['label']}={label['value']}"]
        created = docker(master, *argv, inputs["name"])
        return Outcome(registration.name, created.returncode, created.stdout, created.stderr, time.monotonic() - started)

    def remove(self, names: Iterable[str]) -> list[Outcome]:
        """``pulumi up`` after these commands left the program: deletes, dependents first."""
        wanted = set(names)
        outcomes = []
        for registration in reversed(self.commands):
            if registration.name in wanted and registration.inputs.get("delete"):
                outcomes.append(self.execute(registration.name, "delete"))
        return outcomes

    def commands_of(self, server: str) -> list[str]:
        return [r.name for r in self.commands if r.name.startswith(f"{server}-")]


def reset(hosts: Iterable[LabHost]) -> None:
    """Every host out of any swarm (the manager last, which also drops its networks)."""
    for host in sorted(hosts, key=lambda h: h.name == "swarm-master"):
        docker(host, "swarm", "leave", "--force")


def nodes(master: LabHost) -> dict[str, dict[str, Any]]:
    """The master's node list by hostname: ID, role, state, availability, leader, labels, address."""
    ids = docker(master, "node", "ls", "-q").stdout.split()
    inspected = json.loads(docker(master, "node", "inspect", *ids).stdout)
    return {
        n["Description"]["Hostname"]: {
            "id": n["ID"],
            "role": n["Spec"]["Role"],
            "state": n["Status"]["State"],
            "availability": n["Spec"]["Availability"],
            "leader": bool((n.get("ManagerStatus") or {}).get("Leader")),
            "labels": n["Spec"].get("Labels") or {},
            "address": n["Status"]["Addr"],
        }
        for n in inspected
    }


def swarm_state(host: LabHost) -> str:
    return docker(host, "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
