"""What a POSIX shell script runs, read from shfmt's syntax tree (``argv_check.parse``): every simple
command with its words, the function whose body holds it and the files it redirects its output to; and
the variables a script assigns. For the structural checks of the rendered remote scripts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Optional

from tests.support.argv_check import parse

# shfmt's redirection operators that open a file for writing: >, >>, <>, >|, and >& with a file name.
_WRITES = {54, 55, 57, 60}
_DUPLICATE_OUT = 59


@dataclass(frozen=True)
class Word:
    # The word as written, quotes dropped: parameters as ${NAME}, command substitutions as $(...).
    text: str
    # Every parameter it expands, inside its command substitutions too.
    parameters: frozenset[str]


@dataclass(frozen=True)
class Call:
    words: tuple[Word, ...]
    # The function whose body holds the command; None at the top level.
    function: Optional[str]
    line: int
    # Where its output goes to files (> FILE, >> FILE).
    writes_to: tuple[Word, ...]

    @property
    def argv(self) -> tuple[str, ...]:
        return tuple(word.text for word in self.words)

    @property
    def through_as_root(self) -> bool:
        return self.argv[:1] == ("as_root",)

    @property
    def program(self) -> tuple[Word, ...]:
        """The words of what it runs: those after ``as_root``, or all of them."""
        return self.words[1:] if self.through_as_root else self.words


def _text(node: Any) -> str:
    kind = node.get("Type")
    if kind in ("Lit", "SglQuoted"):
        return str(node.get("Value", ""))  # '' has none
    if kind == "DblQuoted":
        return "".join(_text(part) for part in node.get("Parts") or [])
    if kind == "ParamExp":
        return "${" + node["Param"]["Value"] + "}"
    if kind == "CmdSubst":
        return "$(" + "; ".join(" ".join(_word(a).text for a in (s["Cmd"].get("Args") or [])) for s in node.get("Stmts") or [] if s.get("Cmd")) + ")"
    return "?"


def _parameters(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if node.get("Type") == "ParamExp":
            found.add(node["Param"]["Value"])
        for key, value in node.items():
            if key not in ("Pos", "End"):
                found |= _parameters(value)
    elif isinstance(node, list):
        for value in node:
            found |= _parameters(value)
    return found


def _word(node: dict[str, Any]) -> Word:
    return Word("".join(_text(part) for part in node.get("Parts") or []), frozenset(_parameters(node)))


def _walk(tree: Any) -> list[tuple[dict[str, Any], Optional[str]]]:
    """Every node with the function it is in, parents before children."""
    found: list[tuple[dict[str, Any], Optional[str]]] = []
    pending: list[tuple[Any, Optional[str]]] = [(tree, None)]
    while pending:
        node, function = pending.pop()
        if isinstance(node, dict):
            found.append((node, function))
            inner = node["Name"]["Value"] if node.get("Type") == "FuncDecl" else function
            pending.extend((value, inner) for key, value in reversed(node.items()) if key not in ("Pos", "End") and isinstance(value, (dict, list)))
        elif isinstance(node, list):
            pending.extend((value, function) for value in reversed(node))
    return found


def _written(redirect: dict[str, Any]) -> bool:
    if redirect["Op"] in _WRITES:
        return True
    target = _word(redirect["Word"]).text
    return redirect["Op"] == _DUPLICATE_OUT and not (target.isdigit() or target == "-")


@cache
def calls(script: str) -> tuple[Call, ...]:
    """Every simple command of ``script`` (assignments without a command are not calls), in order."""
    found = []
    for node, function in _walk(parse(script)):
        command = node.get("Cmd")
        if not isinstance(command, dict) or command.get("Type") != "CallExpr" or not command.get("Args"):
            continue
        writes = tuple(_word(r["Word"]) for r in node.get("Redirs") or [] if _written(r))
        found.append(Call(tuple(_word(a) for a in command["Args"]), function, command["Pos"]["Line"], writes))
    return tuple(found)


@cache
def assignments(script: str) -> tuple[tuple[str, Word, Optional[str]], ...]:
    """(name, value, function) of every variable assignment, and of every `for NAME in WORDS` (each word)."""
    found = []
    for node, function in _walk(parse(script)):
        if node.get("Type") == "CallExpr":
            for assign in node.get("Assigns") or []:
                if assign.get("Value") is not None:
                    found.append((assign["Name"]["Value"], _word(assign["Value"]), function))
        elif node.get("Type") == "WordIter":
            found += [(node["Name"]["Value"], _word(item), function) for item in node.get("Items") or []]
    return tuple(found)
