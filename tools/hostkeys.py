"""Pin the servers' SSH host keys in a stack file: scan, show fingerprints, confirm, write.

    python -m tools.hostkeys --stack prod            # scan, show, ask before writing
    python -m tools.hostkeys --stack prod --yes      # write without asking (fingerprints compared already)
    python -m tools.hostkeys --stack prod --replace db1   # accept a CHANGED key for db1

Each server is scanned with ``ssh-keyscan`` at the address Pulumi reaches it on (on the jump host, over
ssh, when the stack has one; the jump host itself is scanned directly). One key per server is pinned,
ed25519 where the server offers it, as pulumi-command checks exactly one key. Compare the printed
SHA256 fingerprints with what the servers say of themselves (``ssh-keygen -lf
/etc/ssh/ssh_host_ed25519_key.pub`` on the console) before confirming. A pinned key that no longer
matches is never replaced silently: that needs ``--replace NAME``. The stack file is edited in place
(comments and layout kept); nothing is written unless every scan succeeded.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pydantic import ValidationError
from ruamel.yaml import YAML

from components.config import _describe
from components.platform.host.component import docker_ssh_opts, pinned_key, ssh_address
from components.platform.host.settings import EXAMPLE_HOST_KEY_MARK, Access, Server
from components.shared.model import SERVER_NAMES, ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "samarth-infra"
JUMP = "jumpHost"
# The order keys are preferred in: ed25519 first; ssh-keyscan is asked for these only.
PREFERRED_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
KEYSCAN_TYPES = "ed25519,ecdsa,rsa"


class HostKeysError(RuntimeError):
    """Why the keys were not written; the message says what to do."""


@dataclass(frozen=True)
class Target:
    name: str  # a server name, or JUMP
    address: str
    port: int
    current: Optional[str]  # the key the stack pins now, if any

    @property
    def where(self) -> str:
        return f"{self.name} ({self.address}:{self.port})"


@dataclass(frozen=True)
class Scanned:
    target: Target
    key: str  # "<type> <base64>"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)

    @property
    def status(self) -> str:
        if self.target.current is None:
            return "new"
        if EXAMPLE_HOST_KEY_MARK in self.target.current:
            return "replaces the example key"
        return "unchanged" if pinned_key(self.target.current) == self.key else "CHANGED"


def fingerprint(key: str) -> str:
    """The SHA256 fingerprint OpenSSH prints for a public key (``ssh-keygen -lf``)."""
    blob = base64.b64decode(key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def choose(keys: Sequence[str]) -> Optional[str]:
    """The preferred key of those a server offered (``<type> <base64>`` each)."""
    by_type = {key.split()[0]: key for key in keys}
    return next((by_type[t] for t in PREFERRED_TYPES if t in by_type), None)


def parse_keyscan(output: str) -> list[str]:
    """``<type> <base64>`` of every key in ssh-keyscan's output (``<host> <type> <base64>`` lines)."""
    keys = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#") and fields[1] in PREFERRED_TYPES:
            keys.append(f"{fields[1]} {fields[2]}")
    return keys


def keyscan_argv(target: Target, timeout: int) -> list[str]:
    return ["ssh-keyscan", "-T", str(timeout), "-p", str(target.port), "-t", KEYSCAN_TYPES, target.address]


class Stack:
    """A stack file, read for a round-trip edit."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise HostKeysError(f"{path} does not exist: create the stack first (pulumi stack init), or check --stack")
        self.path = path
        self.yaml = YAML()
        self.yaml.preserve_quotes = True
        self.yaml.width = 4096
        # The stack files' own layout (`key:` then `  - item`), which ruamel would otherwise re-indent.
        self.yaml.indent(mapping=2, sequence=4, offset=2)
        self.document = self.yaml.load(path.read_text())
        config = (self.document or {}).get("config") or {}
        self.servers_node: Any = config.get(f"{PROJECT}:servers")
        if not isinstance(self.servers_node, dict):
            raise HostKeysError(f"{path}: {PROJECT}:servers is missing; declare the six servers first")
        self.access_node: dict[str, Any] = config.get(f"{PROJECT}:access") or {}
        problems = []
        self.servers: dict[str, Server] = {}
        for name in SERVER_NAMES:
            if name not in self.servers_node:
                problems.append(f"servers.{name}: missing")
                continue
            try:
                self.servers[name] = Server.model_validate(_plain(self.servers_node[name]))
            except ValidationError as exc:
                problems += [_describe({**e, "loc": ("servers", name, *e["loc"])}) for e in exc.errors()]
        try:
            self.access = Access.model_validate(_plain(self.access_node))
        except ValidationError as exc:
            problems += [_describe({**e, "loc": ("access", *e["loc"])}) for e in exc.errors()]
        if problems:
            raise HostKeysError(f"{path}: fix these first:\n  " + "\n  ".join(problems))

    def jump(self) -> Optional[Target]:
        jump = self.access.jump_host
        if jump is None:
            return None
        return Target(JUMP, jump.host, jump.port, jump.host_key)

    def targets(self) -> list[Target]:
        return [
            Target(name, ssh_address(server, self.access), server.ssh_port, server.host_key)
            for name, server in self.servers.items()
        ]

    def write(self, keys: Sequence[Scanned]) -> None:
        for scanned in keys:
            if scanned.target.name == JUMP:
                self.access_node["jumpHost"]["hostKey"] = scanned.key
            else:
                self.servers_node[scanned.target.name]["hostKey"] = scanned.key
        buffer = io.StringIO()
        self.yaml.dump(self.document, buffer)
        temporary = self.path.with_name(f".{self.path.name}.hostkeys")
        temporary.write_text(buffer.getvalue())
        temporary.replace(self.path)


def _plain(node: Any) -> Any:
    """ruamel's round-trip nodes as plain dicts and lists (for validation)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


class Scanner:
    """Runs ssh-keyscan locally, or on the jump host over ssh (checking the jump host's key)."""

    def __init__(self, timeout: int, jump_user: Optional[str] = None) -> None:
        self.timeout = timeout
        self.jump_user = jump_user
        self.via: Optional[Scanned] = None
        self._directory = tempfile.TemporaryDirectory(prefix="samarth-hostkeys-")

    def close(self) -> None:
        self._directory.cleanup()

    def through(self, jump: Scanned) -> None:
        """Scan the servers from ``jump`` from now on, trusting only its key ``jump.key``."""
        self.via = jump

    def argv(self, target: Target) -> list[str]:
        scan = keyscan_argv(target, self.timeout)
        if self.via is None:
            return scan
        jump = self.via.target
        known_hosts = Path(self._directory.name) / "known_hosts"
        name = jump.address if jump.port == 22 else f"[{jump.address}]:{jump.port}"
        known_hosts.write_text(f"{name} {self.via.key}\n")
        options = docker_ssh_opts(known_hosts, None)
        return ["ssh", *options, "-p", str(jump.port), "-l", self.jump_user or "", jump.address, shlex.join(scan)]

    def scan(self, target: Target) -> Scanned:
        argv = self.argv(target)
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout * 3 + 15)
        except FileNotFoundError:
            raise HostKeysError(f"{argv[0]} is not installed here: apt-get install openssh-client") from None
        except subprocess.TimeoutExpired:
            raise HostKeysError(f"scanning {target.where} timed out") from None
        key = choose(parse_keyscan(result.stdout))
        if key is None:
            where = f" from the jump host {self.via.target.address}" if self.via else ""
            detail = " ".join(line for line in result.stderr.splitlines() if not line.startswith("#")).strip()
            raise HostKeysError(
                f"{target.where} offered no SSH host key{where}: is sshd running and the address right? "
                f"{detail}".strip()
            )
        return Scanned(target, key)


def refuse_changes(changed: Sequence[Scanned], stack: str) -> None:
    lines = [
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
        "@    WARNING: A PINNED SSH HOST KEY HAS CHANGED!           @",
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
        "Someone may be impersonating these servers, or they were reinstalled:",
    ]
    for scanned in changed:
        assert scanned.target.current is not None
        lines.append(
            f"  {scanned.target.where}: pinned {fingerprint(pinned_key(scanned.target.current))}, "
            f"now presents {scanned.fingerprint}"
        )
    names = " ".join(f"--replace {s.target.name}" for s in changed)
    lines.append(
        "Nothing was written. Confirm the new key on the server's console (ssh-keygen -lf "
        "/etc/ssh/ssh_host_ed25519_key.pub), then run: "
        f"python -m tools.hostkeys --stack {stack} {names}"
    )
    raise HostKeysError("\n".join(lines))


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise HostKeysError("not asking on a non-interactive stdin: compare the fingerprints, then run again with --yes")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def run(stack_name: str, directory: Path, yes: bool, replace: Sequence[str], timeout: int) -> int:
    stack = Stack(directory / f"Pulumi.{stack_name}.yaml")
    jump = stack.jump()
    known = {t.name for t in stack.targets()} | ({JUMP} if jump else set())
    unknown = sorted(set(replace) - known)
    if unknown:
        raise HostKeysError(f"--replace {', '.join(unknown)}: not a server of this stack ({', '.join(sorted(known))})")
    scanner = Scanner(timeout, stack.access.jump_host.user if stack.access.jump_host else None)
    try:
        results: list[Scanned] = []
        if jump is not None:
            results.append(scanner.scan(jump))
            if results[0].status == "CHANGED" and JUMP not in replace:
                refuse_changes(results, stack_name)
            scanner.through(results[0])
        results += [scanner.scan(target) for target in stack.targets()]
    finally:
        scanner.close()

    print(f"SSH host keys of stack {stack_name} (compare each fingerprint with the server's own):")
    for scanned in results:
        print(f"  {scanned.target.where:<34} {scanned.key.split()[0]:<20} {scanned.fingerprint}  {scanned.status}")
    changed = [s for s in results if s.status == "CHANGED"]
    refused = [s for s in changed if s.target.name not in replace]
    if refused:
        refuse_changes(refused, stack_name)
    to_write = [s for s in results if s.status != "unchanged"]
    if not to_write:
        print(f"{stack.path.name} already pins every key; nothing to write.")
        return 0
    if changed:
        print("REPLACING the pinned key of " + ", ".join(s.target.name for s in changed) + " (--replace).")
    if not yes and not confirm(f"Write {len(to_write)} key(s) to {stack.path.name}?"):
        print("Nothing written.")
        return 1
    stack.write(to_write)
    print(f"Wrote {len(to_write)} key(s) to {stack.path}. The next `pulumi up` re-runs the remote commands "
          "whose connection changed; on converged servers they change nothing.")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.hostkeys",
        description="Scan the stack's servers (and jump host) with ssh-keyscan, print each key's SHA256 "
        "fingerprint and pin one key per server (ed25519 where offered) in Pulumi.<stack>.yaml.",
    )
    parser.add_argument("--stack", required=True, help="stack name: edits Pulumi.<stack>.yaml")
    parser.add_argument("--yes", action="store_true", help="write without asking (after comparing fingerprints)")
    parser.add_argument(
        "--replace", action="append", default=[], metavar="SERVER",
        help=f"accept a changed key for SERVER (a server name or {JUMP}); repeat for several",
    )
    parser.add_argument("--timeout", type=int, default=10, help="seconds ssh-keyscan waits per server (default 10)")
    parser.add_argument("--directory", type=Path, default=ROOT, help="where the stack files are (default: this project)")
    args = parser.parse_args(argv)
    try:
        return run(args.stack, args.directory, args.yes, args.replace, args.timeout)
    except (HostKeysError, ConfigError) as exc:
        print(f"hostkeys: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hostkeys: interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
