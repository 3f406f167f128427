"""Reading a rendered remote script (components.shell.render): the values its header assigns."""

from __future__ import annotations

import shlex


def script_values(script: str) -> dict[str, str]:
    """The ``NAME=value`` assignments of a rendered script's header, unquoted."""
    header = script.split("\nset -eu\n", 1)[0]
    return dict(word.split("=", 1) for word in shlex.split(header))
