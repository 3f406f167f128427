"""Deployed resources keep their identity: the URN (type, name and the parent types it is nested
under) of every resource of prod and staging is pinned in ``tests/support/urns/<stack>.txt``, with the
parent's URN beside it. Pulumi replaces a resource whose URN changes unless it carries an alias to the
old one, so a pinned URN that disappears must be covered by an ``aliases`` entry.

When resources are ADDED (or removed) on purpose, regenerate the lists and commit the difference:

    SAMARTH_WRITE_URNS=1 venv/bin/python -m pytest -q tests/unit/test_urns.py

A RENAMED resource (new name, type or parent) needs ``ResourceOptions(aliases=[...])`` naming the old
identity instead: then this test passes without regenerating, and an existing stack sees no replacement.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from tools.offline import ProgramRun, Registration

PINNED = Path(__file__).resolve().parents[1] / "support" / "urns"


def _lines(registrations: list[Registration]) -> list[str]:
    """``<urn>  <parent urn>`` per resource, sorted (registration order is not stable)."""
    return sorted(f"{r.urn}  {r.parent or '-'}" for r in registrations)


def _pinned(stack: str) -> dict[str, str]:
    return dict(line.split("  ", 1) for line in (PINNED / f"{stack}.txt").read_text().splitlines() if line)


def problems(pinned: dict[str, str], registrations: list[Registration]) -> list[str]:
    """What an existing stack would see replaced, or what is new, against the pinned URNs."""
    current = {r.urn: r for r in registrations}
    aliased = {alias for r in registrations for alias in r.aliases}
    found = [f"replaced (URN gone, no alias names it): {urn}" for urn in pinned if urn not in current and urn not in aliased]
    found += [f"new: {r.urn}" for r in registrations if r.urn not in pinned and not set(r.aliases) & set(pinned)]
    # A kept URN keeps its parent too (the parent decides what is deleted with what).
    found += [
        f"moved to another parent: {urn}: {pinned[urn]} -> {current[urn].parent or '-'}"
        for urn in pinned
        if urn in current and (current[urn].parent or "-") != pinned[urn] and pinned[urn] not in aliased
    ]
    return sorted(found)


def test_urns_are_pinned_and_renames_are_aliased(stack_run: ProgramRun) -> None:
    path = PINNED / f"{stack_run.stack}.txt"
    if os.environ.get("SAMARTH_WRITE_URNS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join(_lines(stack_run.registrations)) + "\n")
    found = problems(_pinned(stack_run.stack), stack_run.registrations)
    assert not found, (
        "URNs differ from tests/support/urns/: a renamed resource needs an alias; resources added or removed on "
        "purpose need the lists regenerated (see this module's docstring):\n" + "\n".join(found)
    )


def test_a_rename_is_caught_unless_aliased(prod: ProgramRun) -> None:
    pinned = _pinned("prod")
    victim = prod.registrations[-1]
    renamed = replace(victim, urn=victim.urn + "-renamed")
    others = [r for r in prod.registrations if r is not victim]
    assert problems(pinned, others + [renamed]) == sorted(
        [f"new: {renamed.urn}", f"replaced (URN gone, no alias names it): {victim.urn}"]
    )
    assert problems(pinned, others + [replace(renamed, aliases=[victim.urn])]) == []
