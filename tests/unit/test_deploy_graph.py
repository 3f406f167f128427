"""The deploy graph (tools/deploy_graph.py): what a fresh `pulumi up` waits for, read from the dependencies
the SDK sends the engine. The longest chain is pinned: it changes only on purpose."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components.config import load_stack_config
from tools import deploy_graph
from tools.offline import PROJECT, ProgramRun, read_stack_values, run_program, stack_file
from tools.plan import Topology, place, render_plan

COMMAND = "command:remote:Command"

# The longest chain of a fresh `up` of prod. Every Docker object waits for its server's preflight and
# log defaults (a change restarts dockerd). Then Vault's bootstrap is the critical path: its API answers
# only once the container runs, is initialised and unsealed; the backups' AppRole needs its policy, its
# secret ID the role, and the backups' installation that secret ID; Vault's copy of the backup passwords
# waits for the installations (a password is published once its repository opens with it). Shorten it if
# you can; never let it grow by accident.
# The Docker Hub mirror answers before any other Docker Hub image is pulled (docs/mirror.md), so
# Vault's image waits for the mirror's volume and container: two steps the mirror costs.
PROD_CHAIN = [
    "application-preflight",
    "application-docker-log-defaults",
    "hub-mirror-data",
    "hub-mirror-container",
    "application-vault-image",
    "application-vault",
    "application-vault-init",
    "application-vault-unseal",
    "backups-vault-policy",
    "backups-vault-role",
    "backups-vault-secret-id",
    "backups-application-install",
    "vault-kv-platform-backups",
]

# Every remote step on one server that waits for a remote step on another, and why it must.
CROSS_SERVER = {
    # The join reads the worker token the init printed.
    ("swarm-node2-swarm-join", "swarm-master-swarm-init"),
    ("swarm-node3-swarm-join", "swarm-master-swarm-init"),
    # Through the seat, the master's record of the worker that goes after it has left (delete order):
    # creating the seat does nothing, so the join waits for what the seat waits for.
    ("swarm-node2-swarm-join", "swarm-master-docker-log-defaults"),
    ("swarm-node3-swarm-join", "swarm-master-docker-log-defaults"),
    # The master labels the worker once it has joined, and drains it before it leaves.
    ("swarm-node2-swarm-node", "swarm-node2-swarm-join"),
    ("swarm-node3-swarm-node", "swarm-node3-swarm-join"),
    # A login goes to the registry's public name: the registry must answer and Nginx serve its route
    # with a certificate (issued, then Nginx reloaded with it).
    # The backup repository's server authorizes the application's new backup key before the backups
    # there are installed.
    ("backups-application-sftp-repository", "backups-application-ssh-key"),
    ("backups-application-install", "backups-application-sftp-repository"),
    *((f"{node}-registry-login", prerequisite)
      for node in ("swarm-master", "swarm-node2", "swarm-node3")
      for prerequisite in ("registry-container", "nginx-certificate-<registry name>")),
    # Every Docker Hub image pulls through the mirror on the application server, once it answers.
    *((image, "hub-mirror-container")
      for image in (
          "db1-postgres-image", "db1-redis-image", "db1-rabbitmq-image", "backups-db1-restic-image",
          "db2-postgres-image", "db2-redis-image", "db2-rabbitmq-image", "db2-opensearch-image",
          "backups-db2-restic-image", "backups-swarm-master-restic-image",
      )),
}


def _topology(run: ProgramRun) -> Topology:
    return place(run, load_stack_config(PROJECT, read_stack_values(stack_file(run.stack))[0]))


def _step_prerequisites(run: ProgramRun, registration) -> set[str]:
    """The remote steps ``registration`` waits for, seen through providers and passwords (no step)."""
    found: set[str] = set()
    for prerequisite in deploy_graph.prerequisites(run, registration):
        if deploy_graph.step_kind(prerequisite):
            found.add(prerequisite.urn)
        else:
            found |= _step_prerequisites(run, prerequisite)
    return found


def _all_before(run: ProgramRun, registration) -> set[str]:
    """The names of everything the engine creates before ``registration``."""
    found: set[str] = set()
    for prerequisite in deploy_graph.prerequisites(run, registration):
        found |= {prerequisite.name} | _all_before(run, prerequisite)
    return found


def test_the_longest_chain_of_prod_is_pinned(prod: ProgramRun) -> None:
    chain = [r.name for r in deploy_graph.longest_chain(prod)]
    assert chain == PROD_CHAIN, (
        f"the longest chain of a fresh `up` is now {len(chain)} steps ({' -> '.join(chain)}); "
        "if that is on purpose, update PROD_CHAIN"
    )


def test_the_plan_prints_steps_per_server_and_names_the_chain(prod: ProgramRun) -> None:
    plan = render_plan(_topology(prod))
    section = plan[plan.index("== Deploy graph") :]
    assert f"longest chain: {len(PROD_CHAIN)} remote steps" in section
    for number, name in enumerate(PROD_CHAIN, 1):
        assert f"{number:>2}. {name} " in section
    counts = deploy_graph.per_server(prod, _topology(prod).server_of, ["swarm-master"])["swarm-master"]
    assert f"  swarm-master  {counts.commands:>9}{counts.sessions:>14}{counts.docker:>16}" in section


def test_servers_wait_for_each_other_only_where_a_step_needs_the_other(stack_run: ProgramRun) -> None:
    server_of = _topology(stack_run).server_of
    crossing = set()
    for registration in stack_run.registrations:
        if not deploy_graph.step_kind(registration) or registration.urn not in server_of:
            continue
        for urn in _step_prerequisites(stack_run, registration):
            if urn in server_of and server_of[urn] != server_of[registration.urn]:
                crossing.add((registration.name, _named_step(stack_run.by_urn[urn].name)))
    assert crossing == CROSS_SERVER


def _named_step(name: str) -> str:
    """A step named after a stack's host name, with the name as CROSS_SERVER writes it."""
    return re.sub(r"^nginx-certificate-registry\..*", "nginx-certificate-<registry name>", name)


def test_registry_logins_wait_for_the_registry_and_its_proxy_not_for_the_swarm(stack_run: ProgramRun) -> None:
    registry = stack_run.named("docker:index/container:Container", "registry-container")
    # Created only once its healthcheck passes: the registry answers when the logins start.
    assert registry.inputs["wait"] is True
    for node in ("swarm-master", "swarm-node2", "swarm-node3"):
        before = _all_before(stack_run, stack_run.named(COMMAND, f"{node}-registry-login"))
        assert {"registry-container", "nginx-reload", "nginx-certificates-install"} <= before
        assert {_named_step(name) for name in before} >= {"nginx-certificate-<registry name>"}
        # Not for every name's certificate: one whose DNS is not pointed yet does not hold the swarm back.
        assert "nginx-certificates-renew" not in before
        assert "swarm-master-swarm-init" not in before


def test_a_workers_seat_opens_no_session_on_create(stack_run: ProgramRun) -> None:
    """The seat exists for its delete (the worker's entry removed after it left); creating it does
    nothing on the master, so the join waits for the init alone, and stale entries are tidied by the
    labels step after the join."""
    log_defaults = stack_run.named(COMMAND, "swarm-master-docker-log-defaults").urn
    for worker in ("swarm-node2", "swarm-node3"):
        seat = stack_run.named(COMMAND, f"{worker}-swarm-seat")
        assert set(seat.dependencies) == {log_defaults}
        assert not seat.inputs.get("create") and deploy_graph.step_kind(seat) is None
        assert 'docker node rm --force "$id"' in seat.inputs["delete"]
        labels = stack_run.named(COMMAND, f"{worker}-swarm-node").inputs["create"]
        assert 'docker node rm "$stale"' in labels


SAMPLE = '''
import pulumi
import pulumi_command as command
import pulumi_random as random

connection = command.remote.ConnectionArgs(host="192.0.2.1")


class Pair(pulumi.ComponentResource):
    def __init__(self, name):
        super().__init__("sample:index:Pair", name)
        self.first = command.remote.Command(f"{name}-first", connection=connection, create="true",
                                            opts=pulumi.ResourceOptions(parent=self))
        self.second = command.remote.Command(f"{name}-second", connection=connection, create="true",
                                             opts=pulumi.ResourceOptions(parent=self))


pair = Pair("pair")
# Through an Output: waits for pair-first.
reader = command.remote.Command("reader", connection=connection, create=pair.first.stdout.apply(lambda out: f"echo {out}"))
# A command with only a delete script does nothing when created: no step, no SSH session.
keeper = command.remote.Command("keeper", connection=connection, delete="true",
                                opts=pulumi.ResourceOptions(depends_on=[reader]))
password = random.RandomPassword("password", length=8)
# depends_on a component waits for each of its children; a password is no remote step.
last = command.remote.Command("last", connection=connection, create="true", stdin=password.result,
                              opts=pulumi.ResourceOptions(depends_on=[pair, keeper]))
'''


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> ProgramRun:
    root: Path = tmp_path_factory.mktemp("graph")
    (root / "__main__.py").write_text(SAMPLE)
    (root / "Pulumi.sample.yaml").write_text("config: {}\n")
    run = run_program("sample", root=root, secrets={})
    assert run.error is None, run.error
    return run


def test_the_harness_records_output_and_depends_on_dependencies_as_the_sdk_sends_them(sample: ProgramRun) -> None:
    def names(name: str) -> set[str]:
        return {r.name for r in deploy_graph.prerequisites(sample, sample.named(COMMAND, name))}

    assert names("reader") == {"pair-first"}
    assert names("keeper") == {"reader"}
    # The component stands for its children; the password is an input's dependency.
    assert names("last") == {"pair-first", "pair-second", "keeper", "password"}


def test_the_chain_counts_remote_steps_only(sample: ProgramRun) -> None:
    chain = [r.name for r in deploy_graph.longest_chain(sample)]
    # keeper and the password are on the way but act on no server when created.
    assert chain == ["pair-first", "reader", "last"]
    assert deploy_graph.step_kind(sample.named(COMMAND, "keeper")) is None
