"""Running a `python -m` entry point of this repository inside the test's own process."""

from __future__ import annotations

import contextlib
import io
import runpy
import subprocess
import sys
import warnings


def run_module(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m module argv`` inside this process: the module's own ``__main__`` code and exit
    status, without a new interpreter importing the SDKs again (a few tests run real interpreters
    on purpose). An exception other than SystemExit (a traceback for the user) fails the test that
    called this."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = [module, *argv]
    code = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            # runpy warns that a module it runs as __main__ was imported before (by another test).
            warnings.simplefilter("ignore", RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        sys.argv = saved
    return subprocess.CompletedProcess([module, *argv], code, stdout.getvalue(), stderr.getvalue())
