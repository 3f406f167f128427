"""Root's part of the remote scripts goes one way: components/shared/scripts/root-lib.sh's ``as_root`` (root runs
it as it is, any other SSH user through passwordless ``sudo -n``) after its ``need_root`` check, whose
failure says who needs sudo on which server for what. The stacks log in as a non-root ``sshUser``.

Structural, read from shfmt's syntax tree (a real tool: this tier): no script decides by itself whether it
runs as root or calls sudo, and in every script the program registers (prod and staging, create, update
and delete) each privileged command, each write under a root-owned directory and each use of a root-only
file goes through ``as_root`` (the checker itself is tested below on scripts that forget it). The helper's
behaviour under a stand-in ``sudo``: tests/unit/test_as_root.py."""

from __future__ import annotations

from typing import Optional

import pytest

from components.shared.shell import render, script_files
from tests.support.shell_calls import Call, Word, assignments, calls
from tools.offline import COMMAND, ProgramRun, reveal

LIBRARY = "root-lib.sh"
# Its functions, the only place sudo and the root check may be.
HELPERS = ("as_root", "need_root")
# Installed root-only (0700 in /usr/local/sbin) and run by systemd as root; the remote scripts run it
# through as_root (backup-install.sh's `samarth-backup init`), an operator as root.
RUN_AS_ROOT_ONLY = {"backup-agent.sh"}

# Directories root owns: writing under them takes root.
ROOT_OWNED = ("/etc/", "/usr/", "/var/", "/opt/", "/root/", "/srv/")
# The program's root-only places (0700 directories, 0600 files, 0700 programs): even reading takes root.
ROOT_ONLY = ("/etc/samarth", "/var/lib/samarth-backups", "/usr/local/lib/samarth", "/usr/local/sbin/samarth-")
# Variables holding a path under ROOT_OWNED that the SSH user owns: compose-lib.sh gives the compose
# project's directory to the user, who runs git and docker compose in it. Its parent stays root's.
USERS_OWN = {"DIRECTORY"}
WRITERS = {"mkdir", "rmdir", "mv", "rm", "cp", "ln", "chmod", "chown", "chgrp", "touch", "tee", "install", "truncate", "ssh-keygen"}
# Root's whatever their arguments.
PRIVILEGED = {"systemctl", "useradd", "usermod", "userdel", "groupadd", "iptables", "ip6tables", "iptables-restore", "logrotate", "chown", "chgrp"}
SYSTEMCTL_READS = {"is-active", "is-enabled", "is-failed", "status", "show", "cat", "list-units", "list-timers", "list-unit-files"}
# Name a path without opening it.
MESSAGES = {"step", "fail", "echo", "printf", "need_root", "dirname", "basename"}


def _kind(text: str) -> Optional[str]:
    if text.startswith(ROOT_ONLY):
        return "only"
    if text.startswith(ROOT_OWNED):
        return "owned"
    return None


def _stronger(a: Optional[str], b: Optional[str]) -> Optional[str]:
    return "only" if "only" in (a, b) else a or b


class Paths:
    """Which words of a script name a root-owned or root-only path: literally, through a variable assigned
    one (the rendered header's values, and what is assigned from them), or through a function's positional
    parameter that some call passes one."""

    def __init__(self, script: str, found: tuple[Call, ...]) -> None:
        self.variables: dict[str, Optional[str]] = {}
        self.positional: dict[tuple[str, str], Optional[str]] = {}
        functions = {call.function for call in found if call.function}
        for _ in range(5):
            before = (dict(self.variables), dict(self.positional))
            for name, value, function in assignments(script):
                if name not in USERS_OWN:
                    self.variables[name] = _stronger(self.variables.get(name), self.of(value, function))
            for call in found:
                if call.argv[0] in functions:
                    for number, word in enumerate(call.words[1:], 1):
                        key = (call.argv[0], str(number))
                        self.positional[key] = _stronger(self.positional.get(key), self.of(word, call.function))
            if (self.variables, self.positional) == before:
                break

    def of(self, word: Word, function: Optional[str]) -> Optional[str]:
        kind = _kind(word.text)
        if any(f"$(dirname ${{{name}}})" in word.text for name in USERS_OWN):
            kind = _stronger(kind, "owned")
        for parameter in word.parameters:
            kind = _stronger(kind, self.variables.get(parameter))
            if function is not None:
                kind = _stronger(kind, self.positional.get((function, parameter)))
        return kind


def _checks_for_root(call: Call) -> bool:
    """`[ "$(id -u)" -eq 0 ]` and the like."""
    return call.argv[0] in ("[", "test") and "$(id -u)" in call.argv


def root_problems(script: str) -> list[str]:
    """Everything ``script`` does as the SSH user that takes root, and root checks of its own."""
    found = calls(script)
    paths = Paths(script, found)
    functions = {call.function for call in found if call.function}
    problems = []
    outside = [call for call in found if call.function not in HELPERS]
    for call in outside:
        where = f"line {call.line}: {' '.join(call.argv)}"
        if _checks_for_root(call):
            problems.append(f"{where}: decides by itself whether it runs as root (use need_root)")
        if call.argv[0] == "sudo":
            problems.append(f"{where}: sudo outside {LIBRARY} (use as_root)")
        for target in call.writes_to:
            if paths.of(target, call.function):
                problems.append(f"{where} > {target.text}: writes a root-owned file as the SSH user (use `| as_root tee`)")
        if call.through_as_root or not call.program:
            continue
        program = call.program[0].text
        words = call.program[1:]
        writes = program in WRITERS or call.argv[:2] == ("docker", "cp")
        if writes and any(paths.of(word, call.function) for word in words):
            problems.append(f"{where}: changes a root-owned path as the SSH user (use as_root)")
        privileged = program.rsplit("/", 1)[-1] in PRIVILEGED
        if program == "systemctl":
            privileged = not (words and words[0].text in SYSTEMCTL_READS)
        if program == "sysctl":
            privileged = any(word.text in ("-w", "--write", "-p", "--load", "--system") for word in words)
        if privileged:
            problems.append(f"{where}: needs root (use as_root)")
        if program not in MESSAGES and program not in functions and any(paths.of(word, call.function) == "only" for word in call.program):
            problems.append(f"{where}: uses a root-only file as the SSH user (use as_root)")
    root_calls = [call for call in outside if call.through_as_root]
    checks = [call for call in outside if call.argv[0] == "need_root"]
    if root_calls and not checks:
        problems.append(f"runs as_root without need_root first (line {root_calls[0].line})")
    top = [call.line for call in root_calls if call.function is None], [call.line for call in checks if call.function is None]
    if top[0] and top[1] and min(top[1]) > min(top[0]):
        problems.append(f"line {min(top[0])}: as_root before need_root")
    if root_calls and "SERVER" not in {name for name, _, function in assignments(script) if function is None}:
        problems.append("runs as_root without SERVER, which need_root's message names")
    return problems


def remote_scripts(run: ProgramRun) -> list[tuple[str, str]]:
    """(where, script) of every remote command's create, update and delete."""
    found = []
    for registration in run.of_type(COMMAND):
        for phase in ("create", "update", "delete"):
            text = reveal(registration.inputs.get(phase))
            if text:
                found.append((f"{registration.name} {phase}", str(text)))
    return found


def test_only_the_library_calls_sudo_or_asks_whether_it_runs_as_root() -> None:
    files = sorted(script_files().values())
    assert len(files) > 30
    problems = []
    for path in files:
        if path.name == LIBRARY:
            continue
        for call in calls(path.read_text()):
            where = f"{path.name} line {call.line}"
            if call.argv[0] == "sudo":
                problems.append(f"{where}: sudo (use as_root from {LIBRARY})")
            if _checks_for_root(call) and path.name not in RUN_AS_ROOT_ONLY:
                problems.append(f"{where}: a root check of its own (use need_root from {LIBRARY})")
        defined = {call.function for call in calls(path.read_text()) if call.function} & set(HELPERS)
        if defined:
            problems.append(f"{path.name}: defines {', '.join(sorted(defined))} again (source {LIBRARY})")
    assert not problems, "\n".join(problems)


def test_every_remote_script_does_roots_part_through_as_root(stack_run: ProgramRun) -> None:
    scripts = remote_scripts(stack_run)
    problems = [f"{where}: {problem}" for where, script in scripts for problem in root_problems(script)]
    assert not problems, "\n".join(problems)
    # The scripts that need root, the backup agent's installer and its SFTP repository among them.
    through_sudo = {where.split()[0] for where, script in scripts if any(call.through_as_root for call in calls(script))}
    assert {"backups-db1-install", "backups-application-ssh-key", "backups-application-sftp-repository", "application-docker-log-defaults",
            "firewall-db1", "nginx-certificates-install", "observability-sentry-install"} <= through_sudo, sorted(through_sudo)


PATHS = {"UNIT_DIR": "/etc/systemd/system", "CONFIG_DIR": "/etc/samarth/backups", "DIRECTORY": "/opt/samarth/sentry"}


@pytest.mark.parametrize(
    "body, expected",
    [
        ("need_root x\nas_root systemctl daemon-reload\n", []),
        ("systemctl daemon-reload\n", ["needs root"]),
        ("systemctl is-active docker\n", []),
        ('need_root x\nprintf x | as_root tee "$UNIT_DIR/a.timer" >/dev/null\n', []),
        ('printf x > "$UNIT_DIR/a.timer"\n', ["writes a root-owned file"]),
        ('cat > /etc/logrotate.d/x <<EOF\nx\nEOF\n', ["writes a root-owned file"]),
        ('mkdir -p "$(dirname "$CONFIG_DIR")"\n', ["changes a root-owned path", "uses a root-only file"]),
        ('key="$CONFIG_DIR/key"\nif [ -s "$key" ]; then :; fi\n', ["uses a root-only file"]),
        ('put() { mv "$1.new" "$1"; }\nput "$UNIT_DIR/x"\n', ["changes a root-owned path"]),
        ('for f in "$UNIT_DIR"/*.timer; do rm -f "$f"; done\n', ["changes a root-owned path"]),
        ('mkdir -p "$DIRECTORY"\nprintf x > "$DIRECTORY/marker"\n', []),
        ('mkdir -p "$(dirname "$DIRECTORY")"\n', ["changes a root-owned path"]),
        ('docker cp c:/usr/bin/restic "$CONFIG_DIR/restic"\n', ["changes a root-owned path", "uses a root-only file"]),
        ('sysctl -n vm.max_map_count\n', []),
        ('sysctl -w vm.max_map_count=262144\n', ["needs root"]),
        ('[ "$(id -u)" -eq 0 ] || fail "run as root"\n', ["decides by itself"]),
        ("sudo -n systemctl daemon-reload\n", ["sudo outside"]),
        ("as_root systemctl daemon-reload\n", ["without need_root"]),
        ("as_root true\nneed_root x\n", ["as_root before need_root"]),
    ],
)
def test_the_checker_finds_roots_part_done_without_as_root(body: str, expected: list[str]) -> None:
    found = root_problems(render(LIBRARY, "probe", SERVER="db1", **PATHS) + body)
    assert len(found) == len(expected), found
    for problem, part in zip(found, expected, strict=True):
        assert part in problem, found
