"""Trying stack config on the program: the prod stack with some keys replaced, refused before anything
is registered (tests/unit/test_config.py, tests/unit/test_config_kinds.py)."""

from __future__ import annotations

from typing import Any

from components.config import ConfigError
from tools.offline import run_program


def refused(expected: list[str], **overrides: Any) -> None:
    """The prod stack with ``overrides`` (top-level keys) is refused naming every fragment of
    ``expected``, and nothing is registered."""
    run = run_program("prod", overrides=overrides)
    assert isinstance(run.error, ConfigError), run.error
    message = str(run.error)
    for fragment in expected:
        assert fragment in message, message
    assert run.registrations == [], "nothing may be registered when config is bad"
