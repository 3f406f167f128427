"""Promote pinned versions from one stack to another: ``python -m tools.promote --from staging --to prod``.

Only the ``samarth-infra:versions`` map moves. The target stack file is edited with a ruamel.yaml
round trip, so its comments, quoting and layout stay as they are, and every line outside the
versions map is checked to be byte-identical before anything is written. A refusal (unknown stack,
unpinned or missing versions, a target that would not validate) changes no file.
"""

from __future__ import annotations

import argparse
import difflib
import io
import os
import stat
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from components.config import ConfigError, validate_versions
from components.deployment import load_deployment
from tools.offline import ROOT, engine_values, read_yaml

VERSIONS = "versions"


class PromotionError(Exception):
    """Why a promotion was refused; nothing was written."""


@dataclass(frozen=True)
class Promotion:
    path: Path
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        name = self.path.name
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                fromfile=f"a/{name}",
                tofile=f"b/{name}",
            )
        )


def _round_trip() -> YAML:
    # The stack files' own style (2-space maps, indented lists, long lines kept whole).
    rt = YAML()
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.width = 4096
    return rt


def _dump(document: Any) -> str:
    out = io.StringIO()
    _round_trip().dump(document, out)
    return out.getvalue()


def project_name(root: Path) -> str:
    path = root / "Pulumi.yaml"
    if not path.is_file():
        raise PromotionError(f"no Pulumi.yaml in {root}: run from the project directory or pass --root")
    return str(read_yaml(path)["name"])


def stack_path(root: Path, stack: str) -> Path:
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise PromotionError(f"unknown stack {stack!r}: there is no {path.name} in {root} (stacks: {', '.join(known) or 'none'})")
    return path


def _config_map(document: Any, path: Path) -> CommentedMap:
    config = document.get("config") if isinstance(document, CommentedMap) else None
    if not isinstance(config, CommentedMap):
        raise PromotionError(f"{path.name} has no config map")
    return config


def _versions_span(document: CommentedMap, key: str) -> tuple[int, int]:
    """Lines ``[start, end)`` of the versions entry: from its key to the next key after it (or EOF)."""
    config = document["config"]
    start = config.lc.key(key)[0]
    keys = list(config)
    following = keys[keys.index(key) + 1 :]
    if following:
        return start, config.lc.key(following[0])[0]
    top = list(document)
    after_config = top[top.index("config") + 1 :]
    return start, (document.lc.key(after_config[0])[0] if after_config else -1)


def _update(target: CommentedMap, source: CommentedMap) -> None:
    """Make ``target`` equal to ``source`` in place: unchanged entries keep their comments and quoting."""
    for key in [k for k in target if k not in source]:
        del target[key]
    for key, value in source.items():
        if key not in target or target[key] != value:
            target[key] = value


def plan_promotion(root: Path, source_stack: str, target_stack: str) -> Promotion:
    """Compute the promoted target file, or raise ``PromotionError``; writes nothing."""
    if source_stack == target_stack:
        raise PromotionError(f"--from and --to are both {source_stack!r}")
    project = project_name(root)
    key = f"{project}:{VERSIONS}"
    source_path = stack_path(root, source_stack)
    target_path = stack_path(root, target_stack)

    source_config = _config_map(_round_trip().load(source_path.read_text()), source_path)
    source_versions = source_config.get(key)
    if source_versions is None:
        raise PromotionError(f"{source_path.name} has no {key}: there is nothing to promote")
    try:
        validate_versions(_plain(source_versions))
    except ConfigError as exc:
        raise PromotionError(f"{source_path.name} is not fully pinned, refusing to promote it: {exc}") from None

    before = target_path.read_text()
    document = _round_trip().load(before)
    target_config = _config_map(document, target_path)
    if _dump(document) != before:
        raise PromotionError(
            f"{target_path.name} does not survive a YAML round trip unchanged (unusual indentation?); "
            "edit its versions by hand or reformat it with 2-space indentation first"
        )
    if isinstance(target_config.get(key), CommentedMap) and isinstance(source_versions, CommentedMap):
        _update(target_config[key], source_versions)
    else:
        target_config[key] = source_versions
    after = _dump(document)

    _check_only_versions_changed(before, after, _round_trip().load(after), key, target_path)
    try:
        values, secure = engine_values(read_yaml(target_path, after))
        load_deployment(project, target_path.name.removeprefix("Pulumi.").removesuffix(".yaml"), values, secure)
    except ConfigError as exc:
        raise PromotionError(f"{target_path.name} would not validate with the promoted versions: {exc}") from None
    return Promotion(path=target_path, before=before, after=after)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, str) else value


def _check_only_versions_changed(before: str, after: str, document: CommentedMap, key: str, path: Path) -> None:
    old = before.splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    start, end = _versions_span(document, key)
    prefix = new[:start]
    suffix = new[end:] if end >= 0 else []
    if old[: len(prefix)] != prefix or old[len(old) - len(suffix) :] != suffix or len(prefix) + len(suffix) > len(old):
        raise PromotionError(f"promotion would change {path.name} outside {key}; refusing")


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so a crash leaves either the old file or the new one."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.promote", description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", required=True, help="stack whose versions are promoted (e.g. staging)")
    parser.add_argument("--to", dest="target", required=True, help="stack file to update (e.g. prod)")
    parser.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    parser.add_argument("--root", type=Path, default=ROOT, help="directory holding Pulumi.yaml and the stack files")
    args = parser.parse_args(argv)
    try:
        promotion = plan_promotion(args.root, args.source, args.target)
    except PromotionError as exc:
        print(f"promote: refused: {exc}", file=sys.stderr)
        return 1
    if not promotion.changed:
        print(f"{promotion.path.name}: versions already match {args.source}; nothing to do")
        return 0
    print(promotion.diff(), end="")
    if args.dry_run:
        print(f"(dry run: {promotion.path.name} not changed)")
    else:
        write_atomically(promotion.path, promotion.after)
        print(f"{promotion.path.name} updated; next: pulumi preview -s {args.target}, then pulumi up -s {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
