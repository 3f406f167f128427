"""The policy pack without the CLI: every registration of a mocks run, through the pack's analyzer.

``tools.offline.run_program`` records what the engine would be asked to register. Each registration is
turned into the ``AnalyzeRequest`` the engine would send a policy pack (inputs with secrets kept,
internal keys dropped, ``protect`` in the options, the provider's inputs), and handed to the same
analyzer servicer ``pulumi preview --policy-pack policies`` starts, with the same rules and the same
secret handling. A violation here is a violation there.

It also checks capacity from the registrations: per server (the ``Host`` owning a container's Docker
provider), the containers' memory limits must fit the server's usable memory and not exceed what the
components' ``placements`` planned, so the limits really are the planned numbers.

``python -m tools.guardrails [STACK ...]`` prints the violations of each stack (exit 1 if any).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
)
from pulumi_policy import policy as sdk_policy
from pulumi_policy.deserialize import serialize_properties
from pulumi_policy.proxy import unknown_checking_proxy

from components.assembly import stack_placements
from components.capacity import usable_mib
from components.config import StackConfig
from components.shared.model import ServerName, server_name
from policies import rules
from tools.offline import (
    HOST,
    SECRET_SIG_KEY,
    ProgramRun,
    Registration,
    known_stack_file,
    reveal,
    run_program,
    stack_deployment,
)

PACK = "samarth-guardrails"


@dataclass(frozen=True)
class Violation:
    policy: str
    urn: str
    message: str
    mandatory: bool

    def __str__(self) -> str:
        return f"[{self.policy}] {self.urn}: {self.message}"


def engine_properties(inputs: dict[str, Any]) -> Mapping[str, Any]:
    """Inputs as the engine marshals them for an analyzer: secrets kept, internal (``__``) keys dropped."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k == SECRET_SIG_KEY or not k.startswith("__")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return serialize_properties(strip(inputs))


def _struct(inputs: dict[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(engine_properties(inputs), struct_pb2.Struct())


def analyze_request(registration: Registration, provider: Optional[Registration]) -> Any:
    request = proto.AnalyzeRequest(
        urn=registration.urn,
        type=registration.type,
        name=registration.name,
        properties=_struct(registration.inputs),
        options=proto.AnalyzerResourceOptions(
            protect=registration.protect,
            deleteBeforeReplace=registration.delete_before_replace,
            deleteBeforeReplaceDefined=True,
            additionalSecretOutputs=registration.additional_secret_outputs,
            parent=registration.parent,
        ),
    )
    if provider is not None:
        request.provider.CopyFrom(
            proto.AnalyzerProviderResource(
                urn=provider.urn, type=provider.type, name=provider.name, properties=_struct(provider.inputs)
            )
        )
    return request


def validation_args(registration: Registration, provider: Optional[Registration] = None) -> ResourceValidationArgs:
    """The ``ResourceValidationArgs`` a validator receives for ``registration`` under the pack."""
    props = unknown_checking_proxy({k: rules._marked(v) for k, v in engine_properties(registration.inputs).items()})
    opts = PolicyResourceOptions(
        protect=registration.protect,
        ignore_changes=[],
        delete_before_replace=registration.delete_before_replace,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=registration.additional_secret_outputs,
        parent=registration.parent or None,
    )
    policy_provider = (
        PolicyProviderResource(provider.type, rules.plain(provider.inputs), provider.urn, provider.name)
        if provider is not None
        else None
    )
    return ResourceValidationArgs(registration.type, props, registration.urn, registration.name, opts, policy_provider)


class Analyzer:
    """The pack's analyzer servicer, as ``policies/__main__.py`` builds it, without the gRPC server."""

    def __init__(self) -> None:
        rules.keep_secret_markers()
        policies: list[sdk_policy.Policy] = list(rules.POLICIES)
        self._servicer = sdk_policy._PolicyAnalyzerServicer(
            PACK, "0.1.0", policies, EnforcementLevel.MANDATORY, None, None, None, None, None, None, None
        )

    def analyze(self, registration: Registration, provider: Optional[Registration] = None) -> list[Violation]:
        response = self._servicer.Analyze(analyze_request(registration, provider), None)
        return [
            Violation(
                policy=d.policyName,
                urn=d.urn or registration.urn,
                message=d.message,
                mandatory=d.enforcementLevel == proto.MANDATORY,
            )
            for d in response.diagnostics
        ]

    def check(self, run: ProgramRun, registrations: Optional[Iterable[Registration]] = None) -> list[Violation]:
        found: list[Violation] = []
        for registration in run.registrations if registrations is None else registrations:
            found.extend(self.analyze(registration, run.provider_of(registration)))
        return found


# --- capacity, from what the program actually registered ----------------------------------------

def server_of(run: ProgramRun, registration: Registration) -> Optional[ServerName]:
    """The server a Docker resource lands on: the ``Host`` that owns its Docker provider."""
    provider = run.provider_of(registration)
    owner = run.parent_of(provider) if provider is not None else None
    return server_name(owner.name) if owner is not None and owner.type == HOST else None


def container_memory(run: ProgramRun) -> dict[ServerName, dict[str, int]]:
    """Memory limits (MiB) of every container, by server then container name."""
    placed: dict[ServerName, dict[str, int]] = defaultdict(dict)
    for container in run.of_type(rules.CONTAINER):
        server = server_of(run, container)
        if server is None:
            raise LookupError(f"container {container.name}: its provider is not a Host's Docker provider")
        placed[server][container.name] = int(reveal(container.inputs).get("memory") or 0)
    return dict(placed)


def capacity_problems(run: ProgramRun, config: StackConfig) -> list[str]:
    """Per server: registered container limits must fit the usable memory and the planned placements."""
    placements = stack_placements(config)
    problems: list[str] = []
    for server, containers in sorted(container_memory(run).items()):
        total = sum(containers.values())
        planned = sum(p.memory_mib for p in placements if p.server == server)
        usable = usable_mib(config, server)
        listing = ", ".join(f"{name} {mib}" for name, mib in sorted(containers.items()))
        if total > usable:
            problems.append(f"{server}: containers take {total} MiB ({listing}), only {usable} MiB usable")
        if total > planned:
            problems.append(f"{server}: containers take {total} MiB ({listing}), placements planned {planned} MiB")
    return problems


def stack_config(stack: str) -> StackConfig:
    return stack_deployment(stack).config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.guardrails", description=__doc__.split("\n")[0])
    parser.add_argument("stacks", nargs="*", default=["prod", "staging"], metavar="STACK",
                        help="stacks to check (a Pulumi.<stack>.yaml each; default: prod staging)")
    args = parser.parse_args(argv)
    try:
        for stack in args.stacks:
            known_stack_file(stack)
    except ValueError as exc:
        parser.error(str(exc))
    analyzer = Analyzer()
    failed = False
    for stack in args.stacks:
        run = run_program(stack)
        if run.error is not None:
            print(f"{stack}: the program failed: {run.error}")
            failed = True
            continue
        found = [str(v) for v in analyzer.check(run)] + capacity_problems(run, stack_config(stack))
        print(f"{stack}: {len(run.registrations)} resources, {len(found)} violations")
        for violation in found:
            print(f"  {violation}")
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
