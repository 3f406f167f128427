"""The upstream record, docs/upstreams.md, as data: one row per pin (see that page for the columns).

The plan prints each ``versions`` pin with the date its row was checked; tests/unit/test_upstreams.py fails
when a pin has no row or prod's pin differs from its row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.offline import ROOT

RECORD = ROOT / "docs" / "upstreams.md"
COLUMNS = ("key", "image", "pinned", "read", "contract", "status", "checked")


@dataclass(frozen=True)
class Row:
    key: str
    image: str
    pinned: str
    read: str
    contract: str
    status: str
    checked: str

    @property
    def decided(self) -> bool:
        return "Decision:" in self.status


def rows(path: Path = RECORD) -> dict[str, Row]:
    """The record's table rows by their first cell (backticks removed)."""
    found: dict[str, Row] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("| ") or line.startswith(("| Key ", "|---")):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != len(COLUMNS):
            raise ValueError(f"{path.name}: a row needs {len(COLUMNS)} cells: {line}")
        cells[0] = cells[0].strip("`")
        cells[2] = cells[2].strip("`")
        found[cells[0]] = Row(*cells)
    return found


def pins(versions: Mapping[str, Any], prefix: str = "versions") -> dict[str, str]:
    """``versions`` flattened to ``versions.a.b -> pin`` (unset keys left out)."""
    flat: dict[str, str] = {}
    for key, value in versions.items():
        if isinstance(value, Mapping):
            flat.update(pins(value, f"{prefix}.{key}"))
        elif value is not None:
            flat[f"{prefix}.{key}"] = str(value)
    return flat


def plan_lines(versions: Mapping[str, Any]) -> list[str]:
    """The plan's section on pins: each with the date its record row was checked, or what is missing."""
    record = rows()
    lines = ["== Pins (versions; each verified at that version in docs/upstreams.md)"]
    for key, pin in sorted(pins(versions).items()):
        row = record.get(key)
        if row is None:
            note = "NO ROW in docs/upstreams.md"
        elif row.pinned != pin:
            note = f"docs/upstreams.md records {row.pinned}: re-check and update the row"
        else:
            note = f"checked {row.checked}" + ("; decision recorded" if row.decided else "")
        lines.append(f"  {key.removeprefix('versions.')}: {pin}  ({note})")
    return lines
