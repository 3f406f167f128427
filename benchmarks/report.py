"""How a benchmark reports a figure: printed for the reader, and recorded for `python -m benchmarks`,
which collects every benchmark's figures into the README's table (set by the runner in the
environment variable below)."""

from __future__ import annotations

import json
import os

FIGURES_FILE = "SAMARTH_BENCHMARK_FIGURES"


def figure(label: str, value: float, unit: str, note: str = "") -> None:
    """Print ``label  value unit  note`` and, under the runner, append it to its figures file."""
    text = f"{value:.3g}" if unit not in ("x", "×") else f"{value:.2f}"
    print(f"{label:<46} {text:>8} {unit}{'  ' + note if note else ''}")
    path = os.environ.get(FIGURES_FILE)
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"label": label, "value": value, "unit": unit, "note": note}) + "\n")
