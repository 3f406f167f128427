"""Shell scripts run on the servers: real ``.sh`` files in the ``scripts/`` folder beside the component
that runs them (``components/<group>/<name>/scripts/``; the libraries every script may use in
``components/shared/scripts/``), rendered with a generated header of quoted variable assignments, so no
value is ever interpolated into a script body. A file is named by its name alone: names are unique.

Scripts are POSIX ``sh`` (the servers' ``/bin/sh`` may be dash). A rendered script is:

    SAMARTH_SCRIPT='<name>'          # how failures identify the script
    NAME='value' ...                 # the values, each ``shlex``-quoted, UPPER_CASE by convention
    <prelude.sh>                     # set -eu, step/fail, the EXIT trap
    <the script file's body>

Each script announces the step it is in with ``step "..."``; on any failure the EXIT trap prints which
script and which step failed, then the command exits non-zero. Inputs are UPPER_CASE variables, which
shellcheck treats as coming from outside (no SC2154), and every file passes shellcheck (tests).
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path

COMPONENTS = Path(__file__).resolve().parent.parent
_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")


# A line that sources a library file: `. ./swarm-lib.sh` (indented or not), beside the script or in
# components/shared/scripts/. shellcheck follows it (components/.shellcheckrc: both source paths);
# rendering puts the library's text in its place, as the servers have no copy of the file.
_LIBRARY = re.compile(r"^[ \t]*\. \./([a-z0-9-]+\.sh)$", re.M)


@cache
def script_files() -> dict[str, Path]:
    """Every script file by its name."""
    files: dict[str, Path] = {}
    for path in sorted(p for p in COMPONENTS.rglob("*.sh") if p.parent.name == "scripts"):
        if path.name in files:
            raise ValueError(f"two scripts are named {path.name}: {files[path.name]} and {path}")
        files[path.name] = path
    return files


@cache
def _source(file: str) -> str:
    """A script file without its leading comment block (shellcheck directives, the file's docs), its
    libraries inlined."""
    lines = script_files()[file].read_text().splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return _LIBRARY.sub(lambda line: _source(line.group(1)).rstrip("\n"), "".join(lines))


def render(file: str, name: str, **values: str | int) -> str:
    """The script file ``<file>`` with the prelude and ``values`` assigned before it;
    ``name`` is how failures identify the script (for example ``swarm-join[swarm-node2]``)."""
    header = [f"SAMARTH_SCRIPT={shlex.quote(name)}"]
    for variable, value in values.items():
        if not _VARIABLE.match(variable):
            raise ValueError(f"{file}: script variable {variable!r} must be UPPER_CASE")
        header.append(f"{variable}={shlex.quote(str(value))}")
    return "\n".join(header) + "\n" + _source("prelude.sh") + _source(file)
