"""Reading a rendered remote script (components.shell.render): the values its header assigns."""

from __future__ import annotations

import re
import shlex

_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=", re.S)


def script_values(script: str) -> dict[str, str]:
    """The ``NAME=value`` assignments of a rendered script's header, unquoted (the header ends at the
    prelude's first command; a value may itself be a rendered script)."""
    words = shlex.shlex(script, posix=True)
    words.whitespace_split = True
    values: dict[str, str] = {}
    for word in words:
        if not _ASSIGNMENT.match(word):
            break
        name, value = word.split("=", 1)
        values[name] = value
    return values
