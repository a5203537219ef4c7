"""What a benchmark shows and keeps: rich tables on the console, verdicts against targets, and
results as JSON with a note of the machine they were measured on."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# Wide enough for the tables when output goes to a file (rich would fold them at 80 columns).
console = Console() if sys.stdout.isatty() else Console(width=160)


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    console.print(table)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    if value != value:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "meets target" if ok else "misses target"


def save_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
    console.print(f"results written to {path}")


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()}
