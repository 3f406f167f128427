"""The deploy graph: what a fresh ``pulumi up`` does on the servers, and what must wait for what.

The engine creates a resource once everything it needs exists: the resources its inputs come from
(Outputs), its explicit ``depends_on`` (a component standing for its children), its provider and a
custom parent. The offline harness records the first two as the SDK sends them to the engine
(``Registration.dependencies``) and the others as they are, so this graph is the engine's.

A *remote step* is a resource whose creation acts on a server: a remote command with a ``create``
script (one SSH session), a file copy (one SSH session), a Docker object (through the Docker provider's
SSH transport) or an object in a service's API (Vault, MinIO). Providers, generated passwords and
commands without a ``create`` script (they exist for their ``delete``) act on nothing when created.
The *longest chain* is the longest run of remote steps each of which waits for the one before: however
parallel the engine is, a fresh ``up`` takes at least that many steps one after another.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Optional

from tools.offline import COMMAND, COPY_TO_REMOTE, ProgramRun, Registration


def step_kind(registration: Registration) -> Optional[str]:
    """What creating ``registration`` does on a server: ``command``, ``file``, ``docker``, ``api``, or
    None when it acts on no server."""
    if not registration.custom or registration.type.startswith("pulumi:providers:"):
        return None
    if registration.type == COMMAND:
        return "command" if registration.inputs.get("create") else None
    if registration.type == COPY_TO_REMOTE:
        return "file"
    package = registration.type.split(":", 1)[0]
    if package == "docker":
        return "docker"
    if package in ("vault", "minio"):
        return "api"
    return None


def prerequisites(run: ProgramRun, registration: Registration) -> list[Registration]:
    """Every resource the engine creates before ``registration``, sorted by name."""
    urns = set(registration.dependencies)
    if registration.provider_urn:
        urns.add(registration.provider_urn)
    parent = run.by_urn.get(registration.parent)
    if parent is not None and parent.custom:
        urns.add(parent.urn)
    return sorted((run.by_urn[u] for u in urns if u in run.by_urn), key=lambda r: r.name)


def longest_chain(run: ProgramRun) -> list[Registration]:
    """The remote steps of the longest chain, first step first (ties: the names sorting first)."""

    @cache
    def chain(urn: str) -> tuple[Registration, ...]:
        registration = run.by_urn[urn]
        before: tuple[Registration, ...] = ()
        for prerequisite in prerequisites(run, registration):
            candidate = chain(prerequisite.urn)
            if len(candidate) > len(before):
                before = candidate
        return before + ((registration,) if step_kind(registration) else ())

    longest: tuple[Registration, ...] = ()
    for registration in sorted(run.registrations, key=lambda r: r.name):
        candidate = chain(registration.urn)
        if len(candidate) > len(longest):
            longest = candidate
    return list(longest)


@dataclass(frozen=True)
class ServerSteps:
    commands: int  # remote commands, whatever their scripts
    sessions: int  # SSH sessions a fresh `up` opens for commands and file copies
    docker: int  # Docker objects created through the server's Docker provider


def per_server(run: ProgramRun, server_of: Mapping[str, str], servers: Sequence[str]) -> dict[str, ServerSteps]:
    """Remote steps per server, for the servers in ``servers`` order."""
    counts: dict[str, Counter[str]] = {server: Counter() for server in servers}
    for registration in run.registrations:
        server = server_of.get(registration.urn)
        if server not in counts:
            continue
        if registration.type == COMMAND:
            counts[server]["commands"] += 1
        kind = step_kind(registration)
        if kind in ("command", "file"):
            counts[server]["sessions"] += 1
        elif kind == "docker":
            counts[server]["docker"] += 1
    return {server: ServerSteps(c["commands"], c["sessions"], c["docker"]) for server, c in counts.items()}


def _describe(registration: Registration, server_of: Mapping[str, str]) -> str:
    kind = step_kind(registration)
    what = registration.type.rsplit(":", 1)[-1]
    where = server_of.get(registration.urn)
    text = {"command": "SSH command", "file": "SSH file copy", "docker": f"docker {what}", "api": f"{what} in its API"}[kind or ""]
    return text + (f" on {where}" if where else "")


def render(run: ProgramRun, server_of: Mapping[str, str], servers: Sequence[str]) -> list[str]:
    """The plan's section on the deploy graph."""
    lines = ["== Deploy graph of a fresh `pulumi up` (each remote command is one SSH session; Docker objects go over the Docker provider's SSH transport)"]
    lines.append(f"  {'server':<14}{'commands':>9}{'SSH sessions':>14}{'docker objects':>16}")
    for server, steps in per_server(run, server_of, servers).items():
        lines.append(f"  {server:<14}{steps.commands:>9}{steps.sessions:>14}{steps.docker:>16}")
    api = sorted(r.type.split(":", 1)[0] for r in run.registrations if step_kind(r) == "api")
    if api:
        lines.append("  and through service APIs: " + ", ".join(f"{n} {pkg} objects" for pkg, n in sorted(Counter(api).items())))
    chain = longest_chain(run)
    lines.append(f"  longest chain: {len(chain)} remote steps, each waiting for the one before")
    width = max((len(r.name) for r in chain), default=0)
    for number, registration in enumerate(chain, 1):
        lines.append(f"    {number:>2}. {registration.name:<{width}}  {_describe(registration, server_of)}")
    return lines
