"""Run the Pulumi program offline, under Pulumi's mocks, exactly as the CLI would feed it.

No CLI, no servers, no credentials: the stack file is read the way the engine reads it (project
config as ``"<project>:<key>"`` strings, structured values as JSON), secure values are replaced by
stand-ins, and every resource registration is recorded with what the engine would see: type, name,
inputs, provider, parent and resource options. The tests and ``tools.plan`` both use this.

Mocks do not apply ``additional_secret_outputs``; the recording monitor does, the way the engine
does, so a generated password that flows into a plaintext input is visible as plaintext here too.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import gc
import json
import logging
import runpy
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import pulumi
import pulumi.runtime
import yaml
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import Stack
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from components.config import ConfigError
from components.deployment import Deployment, load_deployment
from harness.stand_ins import TEST_SECRETS, stand_in_outputs

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "samarth-infra"

# The resource types the tools read a program run by.
HOST = "samarth:host:Host"
CONTAINER = "docker:index/container:Container"
SERVICE = "docker:index/service:Service"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
IMAGE = "docker:index/remoteImage:RemoteImage"
COMMAND = "command:remote:Command"
COPY_TO_REMOTE = "command:remote:CopyToRemote"
SECRET_V2 = "vault:kv/secretV2:SecretV2"
PASSWORD = "random:index/randomPassword:RandomPassword"
SECRET_SIG_KEY = rpc._special_sig_key
SECRET_SIG = rpc._special_secret_sig



def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def reveal(value: Any) -> Any:
    """The value with every secret wrapper removed (recursively)."""
    if is_secret(value):
        return reveal(value.get("value"))
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def plaintext_strings(value: Any) -> Iterator[str]:
    """Every string in ``value`` that is not inside a secret."""
    if is_secret(value):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from plaintext_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from plaintext_strings(v)


def secret_strings(value: Any, inside: bool = False) -> Iterator[str]:
    """Every string in ``value`` that is inside a secret."""
    if is_secret(value):
        yield from secret_strings(value.get("value"), True)
    elif isinstance(value, str):
        if inside:
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from secret_strings(v, inside)
    elif isinstance(value, list):
        for v in value:
            yield from secret_strings(v, inside)


@dataclass
class Registration:
    """One resource as the engine would have been asked to register it."""

    type: str
    name: str
    urn: str
    custom: bool
    parent: str
    provider: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    dependencies: list[str]
    additional_secret_outputs: list[str]
    aliases: list[str] = field(default_factory=list)

    @cached_property
    def plain_inputs(self) -> dict[str, Any]:
        return reveal(self.inputs)

    @property
    def provider_urn(self) -> str:
        """Provider references are ``<urn>::<id>``."""
        return self.provider.rsplit("::", 1)[0] if self.provider else ""


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[Optional[str], dict]:
        outputs = dict(args.inputs)
        outputs.update(stand_in_outputs(args.typ, args.name, reveal(args.inputs)))
        if args.typ == COMMAND:
            outputs.setdefault("stdout", "")
            outputs.setdefault("stderr", "")
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, Optional[list]]:
        return {}, None


def _wrap_secret(value: Any) -> Any:
    return value if is_secret(value) else {SECRET_SIG_KEY: SECRET_SIG, "value": value}


class RecordingMonitor(MockMonitor):
    """A mock monitor that keeps the full registration request and marks secret outputs."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        # Registrations run on executor threads, each of which gets its own event loop.
        self.thread_loops: set[asyncio.AbstractEventLoop] = set()

    def _alias_urn(self, request: Any, alias: Any) -> str:
        """The URN an alias stands for, as the engine computes it from a spec (fields left empty
        mean "the same as the resource's own"; a different stack or project is not supported here)."""
        if alias.urn:
            return str(alias.urn)
        spec = alias.spec
        parent = "" if spec.noParent else (spec.parentUrn or request.parent)
        return self.make_urn(parent, spec.type or request.type, spec.name or request.name)

    def perform(self, request: Any, urn: str, args: pulumi.runtime.MockResourceArgs) -> tuple[Optional[str], dict]:
        """The resource's ID and outputs: the mocks' stand-ins here; lab/rehearsal.py performs it for real."""
        return self.mocks.new_resource(args)

    def RegisterResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return resource_pb2.RegisterResourceResponse(urn=urn)
        self.thread_loops.add(_ensure_event_loop())
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True, keep_internal=True) or {}
        args = pulumi.runtime.MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=inputs,
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
        )
        id_, state = self.perform(request, urn, args)
        for key in request.additionalSecretOutputs:
            if key in state:
                state[key] = _wrap_secret(state[key])
        self.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=urn,
                custom=bool(request.custom),
                parent=request.parent,
                provider=request.provider,
                inputs=inputs,
                outputs=state,
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                delete_before_replace=bool(request.deleteBeforeReplace),
                dependencies=list(request.dependencies),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                aliases=[self._alias_urn(request, alias) for alias in request.aliases],
            )
        )
        obj = _sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = MockMonitor.ResourceRegistration(urn, id_ or "", state)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_ or "", object=obj)


@dataclass
class ProgramRun:
    stack: str
    registrations: list[Registration]
    exports: dict[str, Any]
    error: Optional[BaseException] = None
    # What the program logged at warning level or above (`pulumi preview` shows these as diagnostics).
    warnings: list[str] = field(default_factory=list)
    by_urn: dict[str, Registration] = field(default_factory=dict)
    _descendants: Optional[defaultdict[str, list[Registration]]] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.by_urn = {r.urn: r for r in self.registrations}

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, type_: str, name: str) -> Registration:
        matches = [r for r in self.registrations if r.type == type_ and r.name == name]
        if len(matches) != 1:
            raise LookupError(f"{len(matches)} registrations of {type_} named {name!r}")
        return matches[0]

    def parent_of(self, registration: Registration) -> Optional[Registration]:
        return self.by_urn.get(registration.parent)

    def ancestors(self, registration: Registration) -> Iterator[Registration]:
        parent = self.parent_of(registration)
        while parent is not None:
            yield parent
            parent = self.parent_of(parent)

    def under(self, component: Registration) -> list[Registration]:
        """Every registration whose ancestors include ``component``, in registration order."""
        if self._descendants is None:
            self._descendants = defaultdict(list)
            for registration in self.registrations:
                for ancestor in self.ancestors(registration):
                    self._descendants[ancestor.urn].append(registration)
        return list(self._descendants.get(component.urn, []))

    def provider_of(self, registration: Registration) -> Optional[Registration]:
        return self.by_urn.get(registration.provider_urn)


def stack_file(stack: str, root: Path = ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


class _StrictLoader(yaml.CSafeLoader):
    """YAML as the Pulumi CLI reads stack files: a key written twice in one mapping is an error, not
    "the last one wins". libyaml's parser (PyYAML's C extension): the pure-Python one took a fifth of a
    plan's CPU for three stack files."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"while reading the mapping that starts at line {node.start_mark.line + 1}",
                    node.start_mark,
                    f"key {key!r} is written twice (first at line {seen[key].line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


class StackFileError(ConfigError):
    """A stack or project file that is not valid YAML; the message names the file and the line."""


@functools.lru_cache(maxsize=64)
def _parsed(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)


def read_yaml(path: Path, text: Optional[str] = None) -> Any:
    """``path`` (or ``text`` read from it) parsed as the CLI parses it, or ``StackFileError``. Each
    caller gets a copy of its own: the same text is parsed once per process (the tests read the stack
    files some thousand times)."""
    try:
        return copy.deepcopy(_parsed(path.read_text() if text is None else text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        context = f" ({exc.context})" if exc.context else ""
        raise StackFileError(f"{where}: {exc.problem}{context}") from None
    except yaml.YAMLError as exc:
        raise StackFileError(f"{path}: {exc}") from None


def known_stack_file(stack: str, root: Path = ROOT) -> Path:
    """``stack_file``, or a ``ValueError`` naming the stacks there are when it has none."""
    path = stack_file(stack, root)
    if not path.is_file():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in root.glob("Pulumi.*.yaml"))
        raise ValueError(f"unknown stack {stack!r}: no {path.name} in {root} (stacks here: {', '.join(known) or 'none'})")
    return path


def stack_deployment(stack: str, root: Path = ROOT) -> Deployment:
    """``load_deployment`` for a stack file, with the values the engine would pass the program."""
    values, secure = read_stack_values(stack_file(stack, root))
    return load_deployment(PROJECT, stack, with_project_defaults(values, root), secure)


def with_project_defaults(values: Mapping[str, str], root: Path = ROOT) -> dict[str, str]:
    """As the CLI does: a key the stack does not set takes its default from Pulumi.yaml."""
    config = dict(values)
    for key, default in project_defaults(root).items():
        config.setdefault(f"{PROJECT}:{key}", _engine_text(default))
    return config


def read_stack_values(path: Path) -> tuple[dict[str, str], list[str]]:
    """Config as the engine passes it: ``{"<ns>:<key>": text}`` plus the names of secure keys."""
    return engine_values(read_yaml(path) or {})


def engine_values(document: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """``read_stack_values`` for a stack document already parsed."""
    values: dict[str, str] = {}
    secure: list[str] = []
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            secure.append(key)
            continue
        values[key] = _engine_text(value)
    return values, secure


def project_declarations(root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """The ``config:`` block of ``Pulumi.yaml`` (empty when the directory has none)."""
    path = root / "Pulumi.yaml"
    if not path.exists():
        return {}
    return (read_yaml(path) or {}).get("config") or {}


def project_defaults(root: Path = ROOT) -> dict[str, Any]:
    return {key: spec["default"] for key, spec in project_declarations(root).items() if "default" in spec}


def _engine_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def _close_loops(loop: asyncio.AbstractEventLoop, monitor: RecordingMonitor) -> None:
    """Close every event loop the run used while the interpreter is intact. Loops left to interpreter
    exit fail to close ("Exception ignored in BaseEventLoop.__del__") and slow the exit down."""
    loop.run_until_complete(loop.shutdown_default_executor())
    for thread_loop in monitor.thread_loops:
        thread_loop.close()
    loop.close()


class _Diagnostics(logging.Handler):
    """Collects the program's `pulumi.log` messages at warning level and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_program(
    stack: str,
    *,
    overrides: Optional[Mapping[str, Any]] = None,
    secrets: Optional[Mapping[str, str]] = None,
    values: Optional[Mapping[str, str]] = None,
    root: Path = ROOT,
    monitor: Optional[RecordingMonitor] = None,
) -> ProgramRun:
    """Run ``__main__.py`` for ``stack`` under mocks and return every registration.

    ``overrides`` replace top-level keys (``{"servers": {...}}``; ``None`` removes the key);
    ``secrets`` stand in for secure config (default: ``TEST_SECRETS``); ``values`` replaces the
    stack file altogether; ``monitor`` performs the registrations (default: the mocks' stand-ins).
    The program's exception, if any, is returned in ``error``.
    """
    if values is None:
        values, _ = read_stack_values(stack_file(stack, root))
    config = dict(values)
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            config.pop(full, None)
        else:
            config[full] = _engine_text(value)
    secret_values = TEST_SECRETS if secrets is None else secrets
    for key, value in secret_values.items():
        config[f"{PROJECT}:{key}"] = value
    config = with_project_defaults(config, root)

    runtime_settings.ROOT.set(None)
    # Created here, as set_mocks registers the root stack on the current loop; run in the program's thread.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    monitor = monitor or RecordingMonitor(Mocks())
    mocks = monitor.mocks
    diagnostics = _Diagnostics()
    logger = logging.getLogger(f"{__name__}.program")
    logger.propagate = False
    logger.handlers = [diagnostics]
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor, logger=logger)
    pulumi.runtime.set_all_config(config, secret_keys=[f"{PROJECT}:{k}" for k in secret_values])

    error: Optional[BaseException] = None
    exports: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        runpy.run_path(str(root / "__main__.py"), run_name="__main__")
        stack = runtime_settings.ROOT.get()
        assert isinstance(stack, Stack), "the program registered no stack resource"
        return pulumi.Output.from_input(stack.outputs).apply(exports.update)

    def in_own_thread() -> None:
        nonlocal error
        asyncio.set_event_loop(loop)
        try:
            program()
        except Exception as exc:  # the program's own failure is part of the result
            error = exc
        finally:
            _close_loops(loop, monitor)

    # The program runs in a thread of its own, as under the CLI's language host, on a short stack: the
    # SDK records the call stack of every resource it registers, and the caller's frames (a test
    # runner's, some fifty) would only make that slower. The thread starts in a copy of this context,
    # so it sees the mocks and config set above, and they stay set here afterwards.
    # A run allocates some hundred thousand short-lived futures, tasks and Outputs, all alive until it
    # ends: cyclic garbage collections during the run find nothing to free and cost a fifth of its time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        thread = threading.Thread(target=contextvars.copy_context().run, args=(in_own_thread,), name=f"program-{stack}")
        thread.start()
        thread.join()
    finally:
        if collecting:
            gc.enable()
    # Code after the run (tests building Outputs) needs a current loop.
    asyncio.set_event_loop(asyncio.new_event_loop())
    return ProgramRun(stack=stack, registrations=monitor.registrations, exports=exports, error=error, warnings=diagnostics.messages)
