"""`python -m lab rehearse`: the program's ``__main__.py`` run against the lab machines, each registration
performed for real, in the order the SDK resolves them, its real outputs fed on to the resources that
use them: a rehearsal of ``pulumi up`` without the Pulumi CLI.

The seam is the resource monitor (tools/offline.py's ``RecordingMonitor``, which runs the program as the
CLI's language host would): its ``perform`` hands each registration to the kind that performs it
(lab/rehearsal_kinds.py). Like the engine, the rehearsal keeps a state (URN -> inputs, ID, outputs; a
file of mode 0600, never printed: it holds generated secrets) and compares each registration with it:

- a URN not in the state is created;
- unchanged inputs do nothing (the ID and outputs recorded are handed on);
- changed inputs update in place, unless an input the provider replaces on (``Kind.replace_on``) or one
  the program's ``replaceOnChanges`` names changed: then the resource is replaced, the new one created
  first and the old one deleted after the program, or deleted first with ``deleteBeforeReplace``;
- a URN in the state that the program no longer registers is deleted after the program, dependents first.

A failed operation fails the rehearsal, as it fails ``pulumi up``; what finished is kept in the state, so
the next run resumes from there.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi

from components.shared.model import SERVER_NAMES
from harness.stand_ins import declared_script, stand_in_outputs
from tools.offline import COMMAND, PROJECT, Mocks, ProgramRun, RecordingMonitor, read_stack_values, reveal, run_program

from . import hub
from .acme import CA_CERTIFICATE, pebble
from .core import Lab, LabHost, temporary_lab
from .rehearsal_docker import docker_kinds
from .rehearsal_images import RECIPES, provide, split_reference
from .rehearsal_kinds import Kind, RehearsalError, RemoteCommand, Resource, Saved, kinds
from .rehearsal_minio import minio_kinds
from .rehearsal_vault import vault_kinds
from .request_flow import jenkins_key
from .stack import NOT_ON_THE_LAB, LabCA, default_assignments, write_stack_file

# What a rehearsal reports for each registration.
EXECUTED = "executed"
STAND_IN = "stand-in"
NOT_EXECUTED = "not executed"  # what the lab stack leaves out
NOTHING = "nothing to perform"  # components and provider configurations: no operation of their own
PREVIEWED = "previewed"  # what an `up` would do, not done (``preview``)
# The machine whose network namespace runs the lab's ACME CA (pebble): no Docker, not a server.
ACME_HOST = "acme"
# The state key of the old half of a create-before-delete replacement, until it is deleted.
REPLACED = "#replaced"
# The remote commands the program replaces on every `up` by design (by the script they run), and why.
EVERY_UP = {
    "vault-unseal": "by design: a reboot or a restart seals Vault unseen by Pulumi, so the unseal check runs on "
                    "every up (its trigger holds the time) and acts only when Vault is sealed",
}


@dataclass
class Operation:
    """One registration as the rehearsal performed it."""

    urn: str
    type: str
    server: str
    operation: str  # create, update, replace, same, delete
    outcome: str  # EXECUTED, STAND_IN, NOTHING
    seconds: float = 0.0
    detail: str = ""
    finished: float = field(default_factory=time.monotonic)


@dataclass
class State:
    """The rehearsal's state: what each URN was created with and what it reported (secrets included)."""

    path: Path
    resources: dict[str, Saved] = field(default_factory=dict)
    # Each entry's JSON, kept with the entry it encodes: entries are replaced, never changed in place.
    _encoded: dict[str, tuple[Saved, str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, path: Path) -> State:
        if not path.exists():
            return cls(path)
        document = json.loads(path.read_text())
        return cls(path, {urn: Saved(**saved) for urn, saved in document["resources"].items()})

    def _entry(self, urn: str) -> str:
        saved = self.resources[urn]
        encoded = self._encoded.get(urn)
        if encoded is None or encoded[0] is not saved:
            encoded = self._encoded[urn] = (saved, json.dumps(asdict(saved), sort_keys=True))
        return f"{json.dumps(urn)}: {encoded[1]}"

    def text(self) -> str:
        """The state as ``json.dumps({"resources": ...}, sort_keys=True)`` writes it. The rehearsal saves
        after every operation: each entry is encoded once, not once per save (a whole-state dump each
        time took two thirds of a rehearsal's CPU)."""
        return '{"resources": {' + ", ".join(self._entry(urn) for urn in sorted(self.resources)) + "}}"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".new")
        with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(self.text())
        partial.replace(self.path)


def _changed(old: Mapping[str, Any], new: Mapping[str, Any], ignored: Iterable[str]) -> set[str]:
    skip = set(ignored)
    return {key for key in set(old) | set(new) if key not in skip and old.get(key) != new.get(key)}


class RehearsalMonitor(RecordingMonitor):
    """Performs each registration with its kind; records every operation for the report."""

    def __init__(self, state: State, kinds: Mapping[str, Kind], *, preview: bool = False,
                 replace: Iterable[str] = (), targets: Optional[Iterable[str]] = None) -> None:
        super().__init__(Mocks())
        self.state = state
        self.kinds = kinds
        # As the CLI's `preview`, `--replace URN` and `--target URN` (``rehearse``).
        self.preview = preview
        self.replace = set(replace)
        self.targets = set(targets) if targets is not None else None
        self.operations: list[Operation] = []
        self.registered: set[str] = set()
        self.providers: dict[str, dict[str, Any]] = {}  # provider URN -> its inputs
        self._lock = threading.Lock()

    def _record(self, operation: Operation) -> None:
        with self._lock:
            self.operations.append(operation)

    def _save(self, urn: str, saved: Optional[Saved]) -> None:
        if self.preview:
            return
        with self._lock:
            if saved is None:
                self.state.resources.pop(urn, None)
            else:
                self.state.resources[urn] = saved
            self.state.save()

    def perform(self, request: Any, urn: str, args: pulumi.runtime.MockResourceArgs) -> tuple[Optional[str], dict]:
        inputs = reveal(args.inputs)
        with self._lock:
            self.registered.add(urn)
        if not request.custom or request.type.startswith("pulumi:providers:"):
            # A component, or a provider's configuration: nothing to perform of its own.
            if request.type.startswith("pulumi:providers:"):
                self.providers[urn] = inputs
            known = urn in self.state.resources
            self._save(urn, Saved(request.type, f"{request.name}-id", inputs, {}, ""))
            self._record(Operation(urn, request.type, "", "same" if known else "create", NOTHING))
            return f"{request.name}-id", dict(args.inputs)
        kind = self.kinds.get(request.type)
        if kind is None:
            raise RehearsalError(f"{urn}: no rehearsal of {request.type}; add a kind in lab/rehearsal_kinds.py")
        resource = Resource(urn=urn, type=request.type, name=request.name, inputs=inputs,
                            provider=self.providers.get(request.provider.rsplit("::", 1)[0], {}))
        server = kind.server(resource)

        def saved(id_: str, outputs: dict[str, Any]) -> Saved:
            return Saved(request.type, id_, inputs, outputs, server, bool(request.protect), bool(request.retainOnDelete),
                         dict(resource.provider))

        old = self.state.resources.get(urn)
        started = time.monotonic()
        if self.targets is not None and urn not in self.targets:
            if old is None:
                raise RehearsalError(f"{urn} does not exist yet and is not targeted: add it to --target")
            self._record(Operation(urn, request.type, server, "same", kind.outcome, detail="not targeted"))
            return old.id, {**args.inputs, **old.outputs}
        if old is not None and old.type == request.type:
            changed = _changed(old.inputs, inputs, request.ignoreChanges)
            forced = urn in self.replace
            if not changed and not forced:
                self._record(Operation(urn, request.type, server, "same", kind.outcome))
                return old.id, {**args.inputs, **old.outputs}
            detail = ("--replace; " if forced else "") + (f"changed: {', '.join(sorted(changed))}" if changed else "nothing changed")
            if not forced and not kind.replaces(changed) and not changed & set(request.replaceOnChanges):
                if self.preview:
                    self._record(Operation(urn, request.type, server, "update", PREVIEWED, detail=detail))
                    return old.id, {**args.inputs, **old.outputs}
                outputs = kind.update(resource, old)
                self._save(urn, saved(old.id, outputs))
                self._record(Operation(urn, request.type, server, "update", kind.outcome, time.monotonic() - started, detail))
                return old.id, {**args.inputs, **outputs}
            if old.protect:
                refusal = f"{urn} is protected and its change ({detail}) replaces it: `pulumi state unprotect` it first"
                if self.preview:
                    self._record(Operation(urn, request.type, server, "replace", PREVIEWED, detail=f"refused: {refusal}"))
                    return old.id, {**args.inputs, **old.outputs}
                raise RehearsalError(refusal)
            if self.preview:
                detail = EVERY_UP.get(declared_script(inputs) or "", detail) if request.type == COMMAND else detail
                self._record(Operation(urn, request.type, server, "replace", PREVIEWED, detail=detail))
                return f"{request.name}-previewed", {**args.inputs, **stand_in_outputs(request.type, request.name, inputs)}
            if request.deleteBeforeReplace:
                kind.delete(old)
                self._save(urn, None)
            else:
                # Kept in the state until deleted after the program: a failed run leaves nothing untracked.
                self._save(urn + REPLACED, old)
            operation = "replace"
            detail = EVERY_UP.get(declared_script(inputs) or "", detail) if request.type == COMMAND else detail
        else:
            operation, detail = "create", kind.note
            if self.preview:
                self._record(Operation(urn, request.type, server, "create", PREVIEWED))
                return f"{request.name}-previewed", {**args.inputs, **stand_in_outputs(request.type, request.name, inputs)}
        id_, outputs = kind.create(resource)
        self._save(urn, saved(id_, outputs))
        self._record(Operation(urn, request.type, server, operation, kind.outcome, time.monotonic() - started, detail))
        return id_, {**args.inputs, **outputs}

    def finish(self) -> None:
        """After the program: delete the old halves of replacements, then what the program no longer
        registers, last created first (dependents come after what they depend on)."""
        gone = [urn for urn in self.state.resources if urn not in self.registered]
        if self.targets is not None:
            gone = [urn for urn in gone if urn.removesuffix(REPLACED) in self.targets]
        for urn in sorted(gone, key=lambda u: not u.endswith(REPLACED)):
            old = self.state.resources[urn]
            why = "replaced" if urn.endswith(REPLACED) else "no longer in the program"
            if old.protect and not urn.endswith(REPLACED):
                refusal = f"{urn} is protected and no longer in the program: `pulumi state unprotect` it first"
                if self.preview:
                    self._record(Operation(urn, old.type, old.server, "delete", PREVIEWED, detail=f"refused: {refusal}"))
                    continue
                raise RehearsalError(refusal)
            if self.preview:
                self._record(Operation(urn.removesuffix(REPLACED), old.type, old.server, "delete", PREVIEWED, detail=why))
                continue
            kind = self.kinds[old.type]
            started = time.monotonic()
            if not old.retain_on_delete:
                kind.delete(old)
            self._save(urn, None)
            self._record(Operation(urn.removesuffix(REPLACED), old.type, old.server, "delete", kind.outcome,
                                   time.monotonic() - started, why + ("; retained" if old.retain_on_delete else "")))


@dataclass
class Rehearsal:
    run: ProgramRun
    operations: list[Operation]
    started: float  # time.monotonic() at the start
    seconds: float
    # What the lab stack does not deploy at all, and why (lab.stack.NOT_ON_THE_LAB).
    not_executed: Mapping[str, str] = field(default_factory=dict)
    # Per server address, the most remote-command SSH sessions the rehearsal had open at once.
    sessions_at_once: Mapping[str, int] = field(default_factory=dict)

    def server_spans(self) -> dict[str, tuple[float, float]]:
        """Per server: when its first operation started and its last one ended, in seconds from the start."""
        spans: dict[str, tuple[float, float]] = {}
        for op in self.operations:
            if op.server and op.operation != "same":
                begin, end = op.finished - op.seconds - self.started, op.finished - self.started
                first, last = spans.get(op.server, (begin, end))
                spans[op.server] = (min(first, begin), max(last, end))
        return spans

    def failed(self) -> Optional[BaseException]:
        return self.run.error

    def report(self) -> str:
        """Per outcome and type, how many registrations; each stand-in or unexecuted one with its reason."""
        lines = [f"rehearsal: {len(self.operations)} operations in {self.seconds:.1f} s"
                 + (f"; FAILED: {self.run.error}" if self.run.error else "")]
        counts: dict[tuple[str, str, str], int] = {}
        for op in self.operations:
            counts[(op.outcome, op.type, op.operation)] = counts.get((op.outcome, op.type, op.operation), 0) + 1
        for (outcome, type_, operation), count in sorted(counts.items()):
            lines.append(f"  {outcome:<19} {operation:<8} {count:>4}  {type_}")
        # Each stand-in, replacement and deletion by name, those with one reason on one line.
        named: dict[tuple[str, str, str, str], list[str]] = {}
        for op in self.operations:
            if op.operation != "same" and (op.outcome in (STAND_IN, PREVIEWED) or op.operation in ("replace", "delete")):
                named.setdefault((op.operation, op.type, op.outcome, op.detail), []).append(op.urn.rsplit("::", 1)[-1])
        for (operation, type_, outcome, detail), names in named.items():
            lines.append(f"  {operation} {', '.join(sorted(names))} ({type_}): {outcome}; {detail}")
        lines += [f"  {NOT_EXECUTED}: {service}, disabled on the lab stack: {why}" for service, why in sorted(self.not_executed.items())]
        if self.sessions_at_once:
            most = ", ".join(f"{server} {count}" for server, count in sorted(self.sessions_at_once.items()))
            lines.append(f"  most SSH sessions at once (remote commands; sshd's MaxStartups starts refusing past 10 unauthenticated): {most}")
        return "\n".join(lines)


def script_pulls(hosts: Sequence[LabHost], values: Mapping[str, str], hub_host: Optional[LabHost]) -> Callable[[str, str], None]:
    """For ``RemoteCommand``: provide, on the server a script runs on, each image of the stack's
    ``versions`` the script names (the scripts run lego, restic and rclone by their pins), as the
    server's daemon would pull it (``provide``)."""
    by_address = {host.address: host for host in hosts}
    versions = json.loads(values.get(f"{PROJECT}:versions") or "{}")
    pins = [pin for pin in versions.values() if isinstance(pin, str) and ":" in pin and split_reference(pin)[0] in RECIPES]

    def pull(server: str, script: str) -> None:
        for pin in pins:
            if pin in script:
                provide(by_address[server], pin, hub_host)

    return pull


def hub_host(hosts: Sequence[LabHost], values: Mapping[str, str]) -> Optional[LabHost]:
    """The machine the lab's stand-in for Docker Hub runs on (the application server's), when the stack
    has a Docker Hub mirror to pull through it."""
    mirror = json.loads(values.get(f"{PROJECT}:mirror") or "{}")
    return default_assignments(list(hosts)).get("application") if mirror.get("enabled", True) else None


def rehearse(stack: str, values: Mapping[str, str], secrets: Mapping[str, str], state_path: Path,
             hosts: Sequence[LabHost], *, preview: bool = False, replace: Iterable[str] = (),
             targets: Optional[Iterable[str]] = None) -> Rehearsal:
    """Run the program of ``stack`` (its config ``values`` and ``secrets``) for real on the lab machines
    ``hosts`` (its servers' addresses), with the state at ``state_path``; ``preview``, ``replace`` and
    ``targets`` as `pulumi preview`, `--replace URN` and `--target URN`."""
    state = State.load(state_path)
    stand_in = hub_host(hosts, values)
    commands = RemoteCommand(script_pulls(hosts, values, stand_in))
    provider_kinds = {**docker_kinds({host.address: host for host in hosts}, stand_in), **vault_kinds(), **minio_kinds(),
                      COMMAND: commands}
    monitor = RehearsalMonitor(state, kinds(provider_kinds), preview=preview, replace=replace, targets=targets)
    started = time.monotonic()
    run = run_program(stack, values=values, secrets=secrets, monitor=monitor)
    if run.error is None:
        monitor.finish()
    return Rehearsal(run, monitor.operations, started, time.monotonic() - started, NOT_ON_THE_LAB, dict(commands.most_at_once))


@contextmanager
def lab_ca(lab: Lab, work: Path) -> Iterator[LabCA]:
    """What the lab stack reaches outside its servers, its Internet: the lab's stand-in for Docker Hub
    (lab/hub.py) on the application machine, and its ACME CA while the block runs: pebble in the network
    namespace of a machine without Docker (``acme``, brought up when missing), every name answered with
    the application machine's address; its TLS root placed on the application machine (``edge.tls.acme.caCertificate``), the root
    it issues under fetched from its management API into ``work`` (``edge.tls.issuerRoots``)."""
    (ca,) = lab.up([ACME_HOST], bare=True)
    application = lab.host("application")
    # The stack's Docker Hub mirror pulls from the lab's stand-in for Docker Hub, which must answer too.
    hub.start(application)
    with open(work / "pebble.log", "w") as logs, pebble(ca, application, work, logs) as served:
        application.write_file(CA_CERTIFICATE, served.ca_pem.read_text())
        context = ssl.create_default_context(cafile=str(served.ca_pem))
        with urllib.request.urlopen(f"https://{ca.address}:15000/roots/0", context=context, timeout=10) as answer:
            roots = work / "pebble-roots.pem"
            roots.write_bytes(answer.read())
        yield LabCA(served.directory_url, CA_CERTIFICATE, roots)


def point_dns(lab: Lab, values: Mapping[str, str]) -> None:
    """The lab's resolver answers each name the stack's routes serve with the application machine's
    address, as the public DNS records a team sets before a deploy."""
    application = lab.host("application")
    for route in json.loads(values[f"{PROJECT}:edge"])["routes"]:
        lab.add_dns_record(route["host"], application.address)


@dataclass(frozen=True)
class RehearsalLab:
    """Fresh lab machines playing the six servers, the lab's CA, and the lab stack written for them."""

    lab: Lab
    values: Mapping[str, str]
    secrets: Mapping[str, str]
    state: Path
    ca: LabCA
    work: Path  # the rehearsal's scratch directory

    def rehearse(self, versions: Optional[Mapping[str, str]] = None, **options: Any) -> Rehearsal:
        """``rehearse`` of the lab stack, with ``versions`` pinned over its own (a version bump promoted to
        it); ``options``: ``preview``, ``replace``, ``targets``."""
        return rehearse("lab", with_versions(self.values, versions or {}), self.secrets, self.state, self.lab.hosts(), **options)


def with_versions(values: Mapping[str, str], pins: Mapping[str, str]) -> dict[str, str]:
    """The engine's ``values`` with ``versions.<key>`` set to each of ``pins``."""
    key = f"{PROJECT}:versions"
    return {**values, key: json.dumps({**json.loads(values[key]), **pins})}


@contextmanager
def fresh_lab(tag: str) -> Iterator[RehearsalLab]:
    """A ``RehearsalLab`` on new machines (``tag`` and this process's id name them), down when the block ends."""
    with temporary_lab(list(SERVER_NAMES), tag) as (lab, _), tempfile.TemporaryDirectory(prefix=f"rehearsal-{tag}-") as scratch:
        work = Path(scratch)
        with lab_ca(lab, work) as acme:
            stack_file = write_stack_file(lab.hosts(), work / "Pulumi.lab.yaml", pulumi_from=lab.gateway, acme=acme,
                                          deploy_key=jenkins_key(work))
            values, _ = read_stack_values(stack_file)
            point_dns(lab, values)
            yield RehearsalLab(lab, values, {"sshPrivateKey": lab.key_path.read_text()}, work / "rehearsal.json", acme, work)
