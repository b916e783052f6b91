"""What `dreamgym store info` and `dreamgym store sql` show: the info summary and rich tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from dreamgym_cli.store.store import ReplayStore


def collect_info(store: "ReplayStore") -> dict[str, Any]:
    """The JSON-ready summary behind `ReplayStore.info()`."""
    catalog = store.catalog()
    con = store.connect(read_only=True)

    def one(query: str) -> Any:
        return con.execute(query).fetchall()[0][0]

    def counts(table: str, column: str) -> dict[str, int]:
        query = f"SELECT {column}, count(*) FROM {table} GROUP BY 1 ORDER BY 1"
        rows = con.execute(query).fetchall()
        return {str(k): int(v) for k, v in rows}

    success = con.execute("SELECT env, avg(success::INT), count(success) FROM episodes "
                      "GROUP BY env ORDER BY env").fetchall()
    rate = one("SELECT avg(success::INT) FROM episodes")
    mean_length = one("SELECT avg(length) FROM episodes")
    info = {
        "path": str(store.path),
        "schema_version": catalog.get("schema_version"),
        "segments": {t: len(s) for t, s in catalog["tables"].items()},
        "bytes": sum(s.get("bytes", 0) for segs in catalog["tables"].values() for s in segs),
        "tasks": {"total": one("SELECT count(*) FROM tasks"), "by_env": counts("tasks", "env"),
                  "by_split": counts("tasks", "split")},
        "episodes": {
            "total": one("SELECT count(*) FROM episodes"),
            "by_env": counts("episodes", "env"),
            "by_source": counts("episodes", "source"),
            "success_rate": None if rate is None else round(float(rate), 6),
            "success_rate_by_env": {env: None if r is None else round(float(r), 6)
                                    for env, r, n in success},
            "success_unknown": one("SELECT count(*) FROM episodes WHERE success IS NULL"),
            "mean_length": None if mean_length is None else round(float(mean_length), 4),
        },
        "steps": {
            "total": one("SELECT count(*) FROM steps"),
            "by_env": counts("steps", "env"),
            "by_source": counts("steps", "source"),
            "reward_unknown": one("SELECT count(*) FROM steps WHERE reward IS NULL"),
        },
        "extra_tables": {t: sum(s["rows"] for s in segs) for t, segs in catalog["tables"].items()
                         if t not in ("tasks", "episodes", "steps")},
    }
    con.close()
    return info


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
