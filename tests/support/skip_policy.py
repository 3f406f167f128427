"""What a skipped test means, and who may skip for want of root: the rules in one place.

In CI (CI=true) every test must run: a skip there means a tool the tests drive was not installed or
started, which would silently hide the real-tool tests. Elsewhere a skip says why and how to fix it, and
the run ends with a line counting the skips by reason (written also to the file SKIPPED_SUMMARY names,
for tools/test.sh to repeat last).

Root: a test that only needs root's powers over files and ports of its own (a daemon's paths under its
temporary directory, a port below 1024) runs as root of a user namespace through ``as_root``, so it runs
for every user; only what needs the machine's root (the lab's machines, bridges and mounts) skips, with
``needs_root`` and its reason.
"""

from __future__ import annotations

import functools
import os
import pwd
import subprocess
from collections import Counter
from collections.abc import Generator, Sequence

import pytest

IN_CI = os.environ.get("CI") == "true"
IS_ROOT = os.geteuid() == 0

# Root of a new user namespace, mapped to this user: root's powers over this user's own files only.
USER_NAMESPACE = ("unshare", "--user", "--map-root-user")


def needs_root(reason: str) -> pytest.MarkDecorator:
    """For a test that needs the machine's root, not only a root of its own (``as_root``)."""
    return pytest.mark.skipif(not IS_ROOT, reason=f"needs root: {reason}")


@functools.cache
def _user_namespace_refused() -> str:
    """Why this user cannot make a user and network namespace here ('' when it can)."""
    try:
        made = subprocess.run([*USER_NAMESPACE, "--net", "true"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "unshare is missing (apt-get install util-linux)"
    return "" if made.returncode == 0 else made.stderr.strip() or f"unshare exited {made.returncode}"


def as_root(argv: Sequence[str], private_network: bool = False) -> list[str]:
    """``argv`` to run as root: itself when the tests run as root, else as root of a user namespace,
    which is all a program working on the test's own files needs. With ``private_network``, in a network
    namespace of its own as well: a port below 1024 binds there without root and never collides with a
    listener of this machine. Skips, with the reason, where the kernel refuses this user a namespace."""
    network = ("--net",) if private_network else ()
    if IS_ROOT:
        return ["unshare", *network, *argv] if private_network else list(argv)
    refused = _user_namespace_refused()
    if refused:
        pytest.skip(f"needs root, or a user namespace (unshare --user), which the kernel refuses {pwd.getpwuid(os.geteuid()).pw_name} here: {refused}")
    return [*USER_NAMESPACE, *network, *argv]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    summary = ""
    if skipped:
        reasons = Counter(r.longrepr[2].removeprefix("Skipped: ") for r in skipped if isinstance(r.longrepr, tuple))
        summary = f"skipped {len(skipped)} tests: " + "; ".join(f"{reason} ({n})" for reason, n in sorted(reasons.items()))
        terminalreporter.write_line(summary)
    if os.environ.get("SKIPPED_SUMMARY"):
        with open(os.environ["SKIPPED_SUMMARY"], "w") as file:
            file.write(summary)
