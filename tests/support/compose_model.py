"""posthog-deploy's compose definition as the install runs it: the upstream file at the pinned commit
(a fixture) merged with the program's override the way Docker Compose merges an override file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

POSTHOG_DEPLOY = Path(__file__).resolve().parent / "fixtures" / "upstreams" / "posthog-deploy-063b964"


class ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags: ``!reset`` drops the key, ``!override`` replaces instead of merging."""


class Reset:
    pass


class Override:
    def __init__(self, value: Any) -> None:
        self.value = value


def _reset(loader: yaml.Loader, node: yaml.Node) -> Reset:
    return Reset()


def _override(loader: yaml.Loader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _reset)
ComposeLoader.add_constructor("!override", _override)


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override file: maps merge, sequences append, scalars replace; tags as above."""
    if isinstance(override, Override):
        return override.value
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, Reset):
                merged.pop(key, None)
            else:
                merged[key] = merge(base.get(key), value)
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + [v for v in override if v not in base]
    return override


def posthog_compose(override: str | None) -> dict[str, Any]:
    """posthog-deploy's docker-compose.yml at the pinned commit, with ``override`` merged in."""
    compose = yaml.load((POSTHOG_DEPLOY / "docker-compose.yml").read_text(), Loader=ComposeLoader)
    if override is not None:
        compose = merge(compose, yaml.load(override, Loader=ComposeLoader))
    return compose
