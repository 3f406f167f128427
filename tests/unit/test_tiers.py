"""What keeps the quick tier quick: the whole program runs once per distinct configuration
(tests/support/program_runs.py), and no test of tests/unit/ starts a real tool (tests/support/real_tools.py)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.support import program_runs
from tests.support.program_runs import configuration_key, program_rerun, program_run
from tests.support.real_tools import REAL_TOOLS, RealToolInQuickTier, real_tool
from tools.offline import TEST_SECRETS, ProgramRun

# A configuration the program refuses before registering anything: a run costs next to nothing.
REFUSED = {"vault": {"serverName": "not a name", "mlock": False}}


def test_a_configuration_runs_once_and_is_shared_whatever_its_key_order() -> None:
    first = program_run("prod", overrides=REFUSED)
    again = program_run("prod", overrides={"vault": {"mlock": False, "serverName": "not a name"}})
    assert again is first and first.error is not None and first.registrations == []
    assert program_runs.ran[configuration_key("prod", overrides=REFUSED)] == 1
    # A rerun runs it once more, and is not shared.
    rerun = program_rerun("prod", overrides=REFUSED)
    assert rerun is not first and str(rerun.error) == str(first.error)
    assert program_runs.ran[configuration_key("prod", overrides=REFUSED)] == 2
    assert program_run("prod", overrides=REFUSED) is first


def test_the_stacks_fixtures_are_the_shared_runs(prod: ProgramRun) -> None:
    assert program_run("prod") is prod


def test_configurations_differ_by_stack_overrides_secrets_and_values() -> None:
    keys = {
        configuration_key("prod"),
        configuration_key("staging"),
        configuration_key("prod", overrides=REFUSED),
        configuration_key("prod", secrets={}),
        configuration_key("prod", secrets=dict(TEST_SECRETS)),
        configuration_key("prod", values={}),
    }
    assert len(keys) == 6
    # No overrides and empty ones are the same configuration.
    assert configuration_key("prod", overrides={}) == configuration_key("prod")


@pytest.mark.parametrize(
    "argv, options, tool",
    [
        (["shfmt", "-ln", "posix", "--to-json"], {}, "shfmt"),
        (["/usr/bin/shellcheck", "--shell=sh", "x.sh"], {}, "shellcheck"),
        ([sys.executable, "-m", "mypy", "."], {}, "mypy"),
        ("restic snapshots --json", {"shell": True}, "restic"),
        (["anything"], {"executable": "/usr/local/bin/ruff"}, "ruff"),
        (["sh", "-c", "shfmt --version"], {}, None),  # a script's own commands are its business
        (["systemd-analyze", "verify", "x.service"], {}, None),
        ([sys.executable, "-m", "tools.plan", "--stack", "prod"], {}, None),
    ],
)
def test_the_real_tools_are_told_by_program_or_module(argv: object, options: dict[str, Any], tool: str | None) -> None:
    assert real_tool(argv, options.get("executable"), bool(options.get("shell"))) == tool


def test_a_quick_tier_test_that_starts_a_real_tool_fails_naming_the_tier() -> None:
    for tool in sorted(REAL_TOOLS):
        with pytest.raises(RealToolInQuickTier, match=f"{tool} is a real tool: .* belongs in tests/tools/"):
            subprocess.run([tool, "--version"], capture_output=True, check=False)
    assert subprocess.run(["sh", "-c", "exit 0"], check=False).returncode == 0
