"""One way into a stack's configuration: components.deployment.load_deployment, after every check
that spans sections; the SDK's private config state is read in one place only."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from components.capacity import CapacityError
from components.config import ConfigError
from components.deployment import load_deployment
from tools.offline import PROJECT, ROOT, read_stack_values, stack_file


def _prod() -> tuple[dict[str, str], list[str]]:
    return read_stack_values(stack_file("prod"))


def test_the_committed_stacks_load_with_their_placements() -> None:
    for stack in ("prod", "staging"):
        values, secure = read_stack_values(stack_file(stack))
        deployment = load_deployment(PROJECT, stack, values, secure)
        assert {p.server for p in deployment.placements} >= {"application", "db1", "db2"}
        assert deployment.ssh_private_key is None and deployment.vault_init is None


def test_capacity_is_checked_here() -> None:
    values, secure = _prod()
    servers = json.loads(values[f"{PROJECT}:servers"])
    servers["db2"]["memoryMib"] = 1024
    with pytest.raises(CapacityError, match=r"servers\.db2\.memoryMib"):
        load_deployment(PROJECT, "prod", {**values, f"{PROJECT}:servers": json.dumps(servers)}, secure)


def test_host_keys_and_secret_settings_are_checked_here() -> None:
    values, secure = _prod()
    servers = json.loads(values[f"{PROJECT}:servers"])
    del servers["db1"]["hostKey"]
    with pytest.raises(ConfigError, match=r"servers\.db1\.hostKey: required"):
        load_deployment(PROJECT, "prod", {**values, f"{PROJECT}:servers": json.dumps(servers)}, secure)
    plaintext_key = {**values, f"{PROJECT}:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----"}
    with pytest.raises(ConfigError, match="sshPrivateKey: stored in plaintext"):
        load_deployment(PROJECT, "prod", plaintext_key, secure)
    assert load_deployment(PROJECT, "prod", plaintext_key, [*secure, f"{PROJECT}:sshPrivateKey"]).ssh_private_key


def _python_files() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if not {"venv", "tests", ".git"} & set(p.relative_to(ROOT).parts)]


def test_only_the_deployment_module_reads_the_sdks_private_config_or_validates_a_stack() -> None:
    private, validating = [], []
    for path in _python_files():
        tree = ast.parse(path.read_text())
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        where = str(path.relative_to(ROOT))
        if {"_SECRET_KEYS", "CONFIG"} & names and "runtime_config" in names:
            private.append(where)
        if "load_stack_config" in names and where not in ("components/config.py", "components/deployment.py"):
            validating.append(where)
    assert private == ["components/deployment.py"]
    assert validating == []


def test_stack_files_are_read_by_tools_offline_only() -> None:
    """One reader of stack files (tools/offline.py: strict YAML, as the CLI reads them); the editors that
    keep comments (tools/promote.py, tools/hostkeys.py) use ruamel's round trip, not PyYAML."""
    readers = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("safe_load", "load", "full_load", "unsafe_load")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "yaml"
            ):
                readers.append(str(path.relative_to(ROOT)))
    assert sorted(set(readers)) == ["tools/offline.py"]
