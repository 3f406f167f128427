"""Everything the program places on the servers, for ``capacity.check_capacity``.

One list for the program (``__main__.py``) and for the lab, which decides from it what its small
machine can hold (``lab/stack.py``).
"""

from __future__ import annotations

from . import data, edge, observability, registry, storage, vault
from .capacity import Placement
from .config import StackConfig


def stack_placements(config: StackConfig) -> list[Placement]:
    return [
        *data.placements(config),
        *vault.placements(config),
        *storage.placements(config),
        *registry.placements(config),
        *observability.placements(config),
        *edge.placements(config),
    ]
