"""What `dreamgym store info` and `dreamgym store sql` show: the info summary and rich tables."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text


def render_info(info: dict[str, Any]) -> None:
    console = Console()
    ep, st, ta = info["episodes"], info["steps"], info["tasks"]
    console.print(f"[bold]replay store[/] {escape(info['path'])}  "
                  f"(schema v{info['schema_version']}, "
                  f"{sum(info['segments'].values())} segments, {info['bytes'] / 1e6:.1f} MB)")
    summary = Table("table", "rows", "by env", "by source / split", title="contents")
    summary.add_row("tasks", str(ta["total"]), _fmt(ta["by_env"]), _fmt(ta["by_split"]))
    summary.add_row("episodes", str(ep["total"]), _fmt(ep["by_env"]), _fmt(ep["by_source"]))
    summary.add_row("steps", str(st["total"]), _fmt(st["by_env"]), _fmt(st["by_source"]))
    for name, rows in info["extra_tables"].items():
        summary.add_row(escape(name), str(rows), "", "")
    console.print(summary)
    rate = "n/a" if ep["success_rate"] is None else f"{ep['success_rate']:.1%}"
    length = "n/a" if ep["mean_length"] is None else f"{ep['mean_length']:.2f}"
    console.print(f"success rate {rate}   mean episode length {length}   "
                  f"steps with unknown reward {st['reward_unknown']}")


def _fmt(counts: dict[str, int]) -> str:
    return escape(", ".join(f"{k}: {v}" for k, v in counts.items()))


def render_table(table: pa.Table, limit: int = 50) -> None:
    """Print the first `limit` rows of a query result as a rich table."""
    console = Console()
    if not console.is_terminal:  # piped: rich would squeeze the columns into 80 characters
        console = Console(width=min(400, max(80, 24 * len(table.column_names))))
    view = Table(*table.column_names, show_lines=False)
    for row in table.slice(0, limit).to_pylist():
        view.add_row(*(Text(_cell(v)) for v in row.values()))  # data is not rich markup
    console.print(view)
    if table.num_rows > limit:
        console.print(f"({table.num_rows} rows, first {limit} shown; --limit to show more)")


def _cell(value: Any, width: int = 200) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
