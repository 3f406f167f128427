"""Every remote command whose script runs the docker CLI waits for its server's log defaults, read from
shfmt's syntax tree of the scripts (a real tool: this tier). The rest of the deploy graph:
tests/unit/test_deploy_graph.py."""

from __future__ import annotations

from tests.support.shell_calls import calls
from tests.unit.test_deploy_graph import COMMAND, _topology
from tools import deploy_graph
from tools.offline import ProgramRun, reveal


def _runs_docker(script: str) -> bool:
    """Whether ``script`` (rendered: its libraries inlined) runs the docker CLI, itself or as root."""
    return any(call.program[:1] and call.program[0].text == "docker" for call in calls(script))


def test_every_command_that_runs_docker_waits_for_its_servers_log_defaults(stack_run: ProgramRun) -> None:
    """A change of the log defaults restarts dockerd: a command talking to it meanwhile fails half-way. The
    preflight comes before (the log defaults wait for it); everything else on the server comes after."""
    server_of = _topology(stack_run).server_of
    before: dict[str, set[str]] = {}

    def all_before(registration) -> set[str]:
        if registration.urn not in before:
            found: set[str] = set()
            for prerequisite in deploy_graph.prerequisites(stack_run, registration):
                found |= {prerequisite.urn} | all_before(prerequisite)
            before[registration.urn] = found
        return before[registration.urn]

    checked, missing = [], []
    for registration in stack_run.of_type(COMMAND):
        server = server_of[registration.urn]
        if registration.name in (f"{server}-preflight", f"{server}-docker-log-defaults"):
            continue
        scripts = [str(reveal(registration.inputs.get(phase)) or "") for phase in ("create", "update", "delete")]
        if not any(_runs_docker(script) for script in scripts):
            continue
        checked.append(registration.name)
        if stack_run.named(COMMAND, f"{server}-docker-log-defaults").urn not in all_before(registration):
            missing.append(registration.name)
    assert {"swarm-master-swarm-init", "swarm-node2-registry-login", "observability-sentry-install"} <= set(checked)
    assert not missing, f"these commands run docker without waiting for their server's log defaults: {', '.join(sorted(missing))}"
