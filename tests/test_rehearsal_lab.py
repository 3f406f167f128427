"""`python -m lab rehearse` on six fresh lab machines: the lab stack deployed by the program itself, every
registration performed for real or listed as a stand-in or not executed with its reason; then a second run
that does nothing but the replacements the program makes on every `up` by design.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from components.config import SERVER_NAMES
from lab import Lab, temporary_lab
from lab.rehearsal import EVERY_UP, EXECUTED, NOTHING, Rehearsal, rehearse
from lab.stack import write_stack_file
from tools.offline import COMMAND, read_stack_values


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with temporary_lab(list(SERVER_NAMES), "r") as (machines, _):
        yield machines


def _rehearse(lab: Lab, work: Path) -> Rehearsal:
    stack = write_stack_file(lab.hosts(), work / "Pulumi.lab.yaml", pulumi_from=lab.gateway)
    values, _ = read_stack_values(stack)
    return rehearse("lab", values, {"sshPrivateKey": lab.key_path.read_text()}, work / "rehearsal.json", lab.hosts())


@pytest.fixture(scope="module")
def first(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[Rehearsal, Path]:
    work = tmp_path_factory.mktemp("rehearsal")
    rehearsal = _rehearse(lab, work)
    print("\n" + rehearsal.report())
    return rehearsal, work


def test_the_lab_stack_deploys_and_every_remote_command_ran(first: tuple[Rehearsal, Path]) -> None:
    rehearsal, _ = first
    assert rehearsal.failed() is None, rehearsal.report()
    commands = [op for op in rehearsal.operations if op.type == COMMAND]
    assert commands and all(op.outcome == EXECUTED and op.operation == "create" for op in commands)
    for op in rehearsal.operations:
        assert op.outcome in (EXECUTED, NOTHING) or op.detail, f"{op.urn}: {op.outcome} without a reason"


def test_a_second_run_changes_only_what_changes_by_design(lab: Lab, first: tuple[Rehearsal, Path]) -> None:
    _, work = first
    again = _rehearse(lab, work)
    assert again.failed() is None, again.report()
    changes = [op for op in again.operations if op.operation not in ("same",)]
    assert changes, "the unseal check runs on every up"
    for op in changes:
        assert op.detail in (EVERY_UP["vault-unseal"], "replaced"), f"{op.urn}: {op.operation} ({op.detail})"
