"""Promotion on copies of the real stack files: only the versions map moves, refusals touch nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from tests.support.entry_points import run_module
from tools.offline import ROOT
from tools.promote import main

KEY = "samarth-infra:versions"


# Staging one redis patch release ahead of prod, as after trying a new release there.
STAGED_REDIS = "redis:7.4.12"


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    prod = yaml.safe_load((tmp_path / "Pulumi.prod.yaml").read_text())["config"][KEY]
    assert prod["redis"] == "redis:7.4.11", "the promotion tests start from prod's pinned redis"
    _edit_staging(tmp_path, lambda config: config[KEY].__setitem__("redis", STAGED_REDIS))
    return tmp_path


def _edit_staging(root: Path, edit) -> None:
    """Change staging the way an operator would (round trip, so the rest of the file stays)."""
    rt = YAML()
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.width = 4096
    path = root / "Pulumi.staging.yaml"
    document = rt.load(path.read_text())
    edit(document["config"])
    with path.open("w") as handle:
        rt.dump(document, handle)


def _versions_lines(text: str) -> tuple[list[str], list[str]]:
    """(lines outside the versions map, lines inside it), the map being the key line and its indented body."""
    outside: list[str] = []
    inside: list[str] = []
    in_map = False
    for line in text.splitlines(keepends=True):
        if line.startswith(f"  {KEY}:"):
            in_map = True
            inside.append(line)
        elif in_map and line.startswith("    "):
            inside.append(line)
        else:
            in_map = False
            outside.append(line)
    return outside, inside


def _promote(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


def test_copies_versions_and_keeps_everything_else_byte_identical(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def bump(config):
        config[KEY]["postgres"] = "postgres:16.16"
        config[KEY]["rabbitmq"] = "rabbitmq:4.1.9"
        config[KEY]["posthogImages"]["kafka"] = "apache/kafka:3.9.2"

    _edit_staging(stacks, bump)
    before = (stacks / "Pulumi.prod.yaml").read_text()
    staging = (stacks / "Pulumi.staging.yaml").read_text()

    assert _promote(stacks, "--from", "staging", "--to", "prod") == 0

    after = (stacks / "Pulumi.prod.yaml").read_text()
    assert yaml.safe_load(after)["config"][KEY] == yaml.safe_load(staging)["config"][KEY]
    assert _versions_lines(after)[0] == _versions_lines(before)[0]
    assert "# Promoted from staging with `python -m tools.promote --from staging --to prod`.\n" in after
    assert after.startswith("# Production. Every address below is a documentation address")
    assert (stacks / "Pulumi.staging.yaml").read_text() == staging
    out = capsys.readouterr().out
    for line in ("-    postgres: postgres:16.15", "+    postgres: postgres:16.16", "+    rabbitmq: rabbitmq:4.1.9"):
        assert f"\n{line}\n" in out
    assert "+    redis: redis:7.4.12\n" in out
    assert "-      kafka: apache/kafka:3.9.1\n+      kafka: apache/kafka:3.9.2\n" in out  # the nested map moves too
    assert [p.name for p in stacks.iterdir() if p.name.startswith(".")] == []


def test_comments_inside_the_target_versions_map_are_kept(stacks: Path) -> None:
    prod = stacks / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text().replace("    redis: redis:7.4.11\n", "    redis: redis:7.4.11  # cache for eSamwad\n"))
    assert _promote(stacks, "--from", "staging", "--to", "prod") == 0
    assert "    redis: redis:7.4.12  # cache for eSamwad\n" in prod.read_text()


def test_dry_run_prints_the_diff_and_changes_nothing(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (stacks / "Pulumi.prod.yaml").read_bytes()
    assert _promote(stacks, "--from", "staging", "--to", "prod", "--dry-run") == 0
    assert (stacks / "Pulumi.prod.yaml").read_bytes() == before
    out = capsys.readouterr().out
    assert "--- a/Pulumi.prod.yaml\n+++ b/Pulumi.prod.yaml\n" in out
    assert "-    redis: redis:7.4.11\n+    redis: redis:7.4.12\n" in out


def test_promoting_twice_is_a_no_op(stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _promote(stacks, "--from", "staging", "--to", "prod") == 0
    once = (stacks / "Pulumi.prod.yaml").read_bytes()
    capsys.readouterr()
    assert _promote(stacks, "--from", "staging", "--to", "prod") == 0
    assert (stacks / "Pulumi.prod.yaml").read_bytes() == once
    assert "nothing to do" in capsys.readouterr().out


def test_file_mode_is_kept(stacks: Path) -> None:
    prod = stacks / "Pulumi.prod.yaml"
    os.chmod(prod, 0o640)
    assert _promote(stacks, "--from", "staging", "--to", "prod") == 0
    assert prod.stat().st_mode & 0o777 == 0o640


def _set(key: str, value):
    def edit(config):
        config[KEY][key] = value

    return edit


def _drop(key: str):
    def edit(config):
        del config[KEY][key]

    return edit


def _drop_map(config):
    del config[KEY]


def _break_target_domain(root: Path) -> None:
    prod = root / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text().replace("samarth-infra:domain: samarth.example.org", "samarth-infra:domain: not_a_domain"))


@pytest.mark.parametrize(
    ("arrange", "args", "message"),
    [
        (None, ("--from", "staging", "--to", "production"), "unknown stack 'production'"),
        (None, ("--from", "qa", "--to", "prod"), "unknown stack 'qa'"),
        (None, ("--from", "prod", "--to", "prod"), "both 'prod'"),
        (("staging", _set("redis", "redis:latest")), (), "versions.redis: 'redis:latest' uses the moving tag 'latest'"),
        (("staging", _set("postgres", "postgres")), (), "versions.postgres: 'postgres' has no tag"),
        (("staging", _drop("rabbitmq")), (), "versions.rabbitmq: required key is missing"),
        (("staging", _set("grafana", "grafana/grafana:11.2.0")), (), "versions.grafana: unknown key"),
        (("staging", _drop_map), (), "Pulumi.staging.yaml has no samarth-infra:versions"),
        (("prod", _break_target_domain), (), "Pulumi.prod.yaml would not validate with the promoted versions"),
    ],
)
def test_refusals_exit_non_zero_and_touch_no_file(
    stacks: Path, capsys: pytest.CaptureFixture[str], arrange, args, message: str
) -> None:
    if arrange is not None:
        which, edit = arrange
        if which == "staging":
            _edit_staging(stacks, edit)
        else:
            edit(stacks)
    files = {p.name: p.read_bytes() for p in stacks.iterdir()}

    assert _promote(stacks, *(args or ("--from", "staging", "--to", "prod"))) == 1

    assert {p.name: p.read_bytes() for p in stacks.iterdir()} == files
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "promote: refused:" in captured.err and message in captured.err


def test_command_line_module_runs(stacks: Path) -> None:
    """`python -m tools.promote` as a command (tests/tools/test_docs_commands_run.py runs the README's dry run in
    a real interpreter)."""
    before = (stacks / "Pulumi.prod.yaml").read_bytes()
    done = run_module("tools.promote", "--from", "staging", "--to", "prod", "--dry-run", "--root", str(stacks))
    assert done.returncode == 0, done.stderr
    assert "+    redis: redis:7.4.12" in done.stdout
    assert (stacks / "Pulumi.prod.yaml").read_bytes() == before


def test_secure_values_and_keys_after_config_are_kept(stacks: Path) -> None:
    prod = stacks / "Pulumi.prod.yaml"
    text = prod.read_text()
    text = text.replace(
        "  samarth-infra:domain:",
        "  samarth-infra:sshPrivateKey:\n    secure: v1:Zm9vYmFy:c2VjcmV0LWtleS1jaXBoZXJ0ZXh0\n  samarth-infra:domain:",
    )
    text += "encryptionsalt: v1:c2FsdA==:v1:abc:def\n"
    prod.write_text(text)
    assert _promote(stacks, "--from", "staging", "--to", "prod") == 0
    after = prod.read_text()
    staging = yaml.safe_load((stacks / "Pulumi.staging.yaml").read_text())["config"][KEY]
    assert yaml.safe_load(after)["config"][KEY] == staging
    assert _versions_lines(after)[0] == _versions_lines(text)[0]
    assert after.endswith("encryptionsalt: v1:c2FsdA==:v1:abc:def\n")
