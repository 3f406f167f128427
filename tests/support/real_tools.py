"""The real tools a test may start only outside the quick tier: their tests live in tests/tools/ (or
tests/daemons/, beside the daemons they need), which CI runs with the rest of the suite.

Each of them costs the quick loop a process start and real work per call (shfmt's syntax tree of every
remote script, mypy over the repository, restic's key derivation): ``refused()`` makes the quick tier's
tests fail when they start one, naming the tier the test belongs to (tests/conftest.py wraps every
test of tests/unit/ in it), so a new test of that kind cannot settle there unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any, Optional

# The programs, by file name or as ``python -m <name>``.
REAL_TOOLS = frozenset({"mypy", "ruff", "shellcheck", "shfmt", "restic"})


class RealToolInQuickTier(RuntimeError):
    """A test of the quick tier started one of ``REAL_TOOLS``."""


def real_tool(args: Any, executable: Optional[str] = None, shell: bool = False) -> Optional[str]:
    """The real tool that ``subprocess.Popen(args, executable=..., shell=...)`` starts, if any."""
    if isinstance(args, (str, bytes, os.PathLike)):
        text = os.fsdecode(args)
        argv: Sequence[str] = shlex.split(text) if shell else [text]
    else:
        argv = [os.fsdecode(arg) for arg in args]
    if not argv:
        return None
    program = os.path.basename(executable or argv[0])
    if program.startswith("python") and "-m" in argv[1:-1]:
        program = argv[argv.index("-m") + 1]
    return program if program in REAL_TOOLS else None


_refusing = False
_popen_init = subprocess.Popen.__init__


def _guarded_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> None:
    if _refusing:
        tool = real_tool(args, options.get("executable"), bool(options.get("shell")))
        if tool is not None:
            raise RealToolInQuickTier(
                f"{tool} is a real tool: a test that starts it belongs in tests/tools/ (or tests/daemons/), not the quick tier tests/unit/"
            )
    _popen_init(self, args, *rest, **options)


subprocess.Popen.__init__ = _guarded_init  # type: ignore[method-assign]


@contextlib.contextmanager
def refused() -> Iterator[None]:
    """Within it, starting a real tool raises ``RealToolInQuickTier``."""
    global _refusing
    before, _refusing = _refusing, True
    try:
        yield
    finally:
        _refusing = before
