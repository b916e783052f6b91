"""Replay store: immutable Parquet segments + a catalog, DuckDB views, dedup, retrieval.

See `store.py` for the API and `segments.py` for the on-disk layout.
"""

from dreamgym_cli.store.render import render_info, render_table
from dreamgym_cli.store.store import AppendResult, ReplayStore, StoreLockedError

__all__ = ["AppendResult", "ReplayStore", "StoreLockedError", "render_info", "render_table"]
