"""Shell scripts run on the servers: one prelude, so every script fails the same, legible way.

Scripts are POSIX ``sh`` (the servers' ``/bin/sh`` may be dash). Each announces the step it is in
with ``step "..."``; on any failure the EXIT trap prints which script and which step failed, then
the command exits non-zero, which is what ``pulumi up`` shows the operator.
"""

from __future__ import annotations

import shlex

PRELUDE = """\
set -eu
SAMARTH_SCRIPT={name}
SAMARTH_STEP="starting"
step() {{ SAMARTH_STEP="$1"; }}
fail() {{ echo "$SAMARTH_SCRIPT: $*" >&2; SAMARTH_STEP=""; exit 1; }}
trap 'rc=$?; if [ "$rc" -ne 0 ] && [ -n "$SAMARTH_STEP" ]; then echo "$SAMARTH_SCRIPT: failed while $SAMARTH_STEP (exit $rc)" >&2; fi' EXIT
"""


def script(name: str, body: str) -> str:
    """Prefix ``body`` with the common prelude; ``name`` is how failures identify the script."""
    return PRELUDE.format(name=shlex.quote(name)) + body.strip("\n") + "\n"


def quote(value: str) -> str:
    return shlex.quote(value)
