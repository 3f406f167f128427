"""Find secrets that would reach a process's argv (visible to every user of the host in `ps` and
/proc/<pid>/cmdline), in a shell script or a container's command.

Scripts are parsed by shfmt (``--to-json``, POSIX mode), not by pattern: a secret may reach a command
only through stdin, a file or the environment. A variable is *secret* when it is read from a secret
stdin (``read``, ``$(cat)``), holds the output of a command that prints a secret (``docker swarm
join-token``, ``operator init``), is given as secret (a container's secret environment), or is
assigned from another secret variable. Builtins (``printf``, ``echo``, ``read``, ``test``...) and
the prelude's ``step``/``fail`` run inside the shell, so passing them a secret variable makes no
process; any other command (and any other function, which may pass its arguments on) does.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

# Builtins of dash and busybox ash, and the keyword-like commands, that never exec a program.
BUILTINS = frozenset(
    {
        ":", ".", "[", "alias", "break", "cd", "continue", "echo", "eval", "exit", "export", "false", "getopts", "local", "printf", "pwd", "read", "readonly", "return",
        "set", "shift", "test", "trap", "true", "type", "ulimit", "umask", "unset", "wait",
    }
)
# The prelude's functions: they only assign and echo.
SAFE_FUNCTIONS = frozenset({"step", "fail"})
# Commands whose output is a secret: a variable assigned from them holds one.
SECRET_SOURCES = (("docker", "swarm", "join-token"), ("operator", "init"))
_ATOM = re.compile(r"[A-Za-z0-9]{16,}")


@dataclass(frozen=True)
class Leak:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def secret_atoms(values: Iterable[str]) -> set[str]:
    """The high-entropy runs (16+ letters and digits, with both) of secret values, and short-enough
    values whole: what a generated password, token or key looks like inside any text that carries it."""
    atoms = set()
    for value in values:
        # A password with punctuation (OpenSearch's) whole, besides its long alphanumeric runs.
        whole = [value] if len(value) >= 16 and not any(c.isspace() for c in value) else []
        for atom in [*whole, *_ATOM.findall(value)]:
            if any(c.isdigit() for c in atom) and any(c.isalpha() for c in atom):
                atoms.add(atom)
    return atoms


@cache
def parse(script: str) -> dict[str, Any]:
    result = subprocess.run(
        ["shfmt", "-ln", "posix", "--to-json"], input=script, capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise ValueError(f"shfmt cannot parse the script: {result.stderr.strip()}")
    return json.loads(result.stdout)


def _nodes(node: Any) -> list[dict[str, Any]]:
    """Every node under ``node``, in document order (parents before children)."""
    found: list[dict[str, Any]] = []
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, dict):
            found.append(current)
            pending.extend(reversed([value for key, value in current.items() if key not in ("Pos", "End")]))
        elif isinstance(current, list):
            pending.extend(reversed(current))
    return found


def _direct_parameters(word: Any) -> set[str]:
    """Parameters a word expands itself (not inside a command substitution, whose commands are
    checked on their own)."""
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("Type") == "CmdSubst":
                return
            if node.get("Type") == "ParamExp":
                found.add(node["Param"]["Value"])
            for key, value in node.items():
                if key not in ("Pos", "End"):
                    visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(word)
    return found


def _all_parameters(node: Any) -> set[str]:
    return {n["Param"]["Value"] for n in _nodes(node) if n.get("Type") == "ParamExp"}


def _literal(word: dict[str, Any]) -> str:
    parts = word.get("Parts") or []
    if len(parts) == 1 and parts[0].get("Type") == "Lit":
        return str(parts[0]["Value"])
    if len(parts) == 1 and parts[0].get("Type") == "SglQuoted":
        return str(parts[0]["Value"])
    return ""


def _calls(node: Any) -> Iterator[dict[str, Any]]:
    return (n for n in _nodes(node) if n.get("Type") == "CallExpr")


def _prints_secret(node: Any, secret_stdin: bool) -> bool:
    """Whether a command substitution's commands print a secret."""
    for call in _calls(node):
        words = [_literal(w) for w in call.get("Args") or []]
        if secret_stdin and words[:1] == ["cat"] and len(words) == 1:
            return True
        for source in SECRET_SOURCES:
            if any(tuple(words[i : i + len(source)]) == source for i in range(len(words))):
                return True
    return False


def script_leaks(where: str, script: str, secret_variables: Iterable[str] = (), secret_stdin: bool = False) -> list[Leak]:
    """Every place ``script`` passes a secret variable to a process's argv."""
    nodes = _nodes(parse(script))
    secret = set(secret_variables)
    functions = {n["Name"]["Value"] for n in nodes if n.get("Type") == "FuncDecl"}
    leaks = []
    # Taint first, to a fixed point (a loop may assign before the use that comes earlier in the text).
    for _ in range(5):
        before = len(secret)
        for node in nodes:
            if node.get("Type") == "CallExpr":
                for assign in node.get("Assigns") or []:
                    value = assign.get("Value")
                    if value is not None and (_all_parameters(value) & secret or _prints_secret(value, secret_stdin)):
                        secret.add(assign["Name"]["Value"])
                args = node.get("Args") or []
                if secret_stdin and args and _literal(args[0]) == "read":
                    secret |= {_literal(a) for a in args[1:] if _literal(a) and not _literal(a).startswith("-")}
            elif node.get("Type") == "WordIter" and _all_parameters(node.get("Items")) & secret:
                secret.add(node["Name"]["Value"])
        if len(secret) == before:
            break
    for call in (n for n in nodes if n.get("Type") == "CallExpr"):
        args = call.get("Args") or []
        # `exec prog ...` and `command prog ...` run prog with the rest as its argv.
        while args and _literal(args[0]) in ("exec", "command") and len(args) > 1 and not _literal(args[1]).startswith("-"):
            args = args[1:]
        if not args:
            continue
        name = _literal(args[0])
        if name in BUILTINS or name in SAFE_FUNCTIONS:
            continue
        for arg in args[1:]:
            for parameter in sorted(_direct_parameters(arg) & secret):
                kind = "the function" if name in functions else "the command"
                line = call["Pos"]["Line"]
                leaks.append(Leak(where, f"line {line}: ${parameter} (secret) is an argument of {kind} {name or '?'}"))
    return leaks


def text_leaks(where: str, text: str, atoms: set[str]) -> list[Leak]:
    """A secret value written into a command or script itself."""
    return [Leak(where, f"holds a secret value ({atom[:4]}…)") for atom in sorted(atoms) if atom in text]
