"""The whole program under mocks, run once per distinct configuration per test process.

``program_run(stack, overrides=..., secrets=..., values=...)`` takes the configuration
``tools.offline.run_program`` takes and returns the run of that configuration: the first call runs
the program, every later call with an equal configuration (compared as JSON, key order aside) returns
the same run, to any test of the process. Under pytest-xdist each worker keeps its own: a worker runs
in a working directory of its own (tests/conftest.py), because the program writes files beside itself
(the Vault CA it hands the provider, ``.samarth/<stack>/*.known_hosts``) and its inputs name them by
absolute path, so runs compared with each other must have run in the same directory.

``program_rerun`` runs a configuration once more, for a test that compares two runs (everything but
what a run stamps on purpose is equal) or reads the files a run of it writes.

Tests must not change a run they are given: it is shared. A test that changes the program itself
(monkeypatching a module it imports), runs it from another root or performs the registrations with a
monitor of its own calls ``run_program``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Optional

from tools.offline import ProgramRun, run_program

_runs: dict[str, ProgramRun] = {}
# How many times this process ran the program, per configuration.
ran: dict[str, int] = {}


def configuration_key(
    stack: str,
    overrides: Optional[Mapping[str, Any]] = None,
    secrets: Optional[Mapping[str, str]] = None,
    values: Optional[Mapping[str, str]] = None,
) -> str:
    """Equal for configurations ``run_program`` treats alike: the stack and its three mappings as JSON.
    No ``overrides`` and empty ones are the same configuration; empty ``secrets`` are not ``None``
    (no secrets at all, against the tests' stand-ins)."""
    document = {"stack": stack, "overrides": dict(overrides or {}), "secrets": secrets, "values": values}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return f"{stack}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _run(stack: str, configuration: Mapping[str, Any]) -> tuple[str, ProgramRun]:
    key = configuration_key(stack, **configuration)
    run = run_program(stack, **configuration)
    ran[key] = ran.get(key, 0) + 1
    return key, run


def program_run(
    stack: str,
    *,
    overrides: Optional[Mapping[str, Any]] = None,
    secrets: Optional[Mapping[str, str]] = None,
    values: Optional[Mapping[str, str]] = None,
) -> ProgramRun:
    """The run of this configuration: run on the first call, shared after."""
    configuration = {"overrides": overrides, "secrets": secrets, "values": values}
    key = configuration_key(stack, **configuration)
    if key not in _runs:
        _runs[key] = _run(stack, configuration)[1]
    return _runs[key]


def program_rerun(stack: str, **configuration: Optional[Mapping[str, Any]]) -> ProgramRun:
    """A second, fresh run of a configuration (``program_run``'s keywords), not shared: its files
    written again."""
    return _run(stack, configuration)[1]
