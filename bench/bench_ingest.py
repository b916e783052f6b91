"""Ingest throughput (transitions/s) into a replay store, at 10K / 100K / 1M synthetic transitions.

    .venv/bin/python bench/bench_ingest.py                 # all sizes, both paths
    .venv/bin/python bench/bench_ingest.py --sizes 10000 --embed [--embed-size 10000]

Paths measured (each run in its own process, so peak memory is per run):
- `arrow`: `ReplayStore.append_arrow` with ready Arrow batches of 50K transitions (the store's
  fast path; building the batches is not timed).
- `jsonl`: `dreamgym ingest` on a canonical JSONL file, end to end (parse, validate, spool,
  commit, manifest); writing the file is not timed.
- `jsonl+embed`: the same followed by `store.embed()` (needs `dreamgym_cli.store.retrieval`).

Synthetic episodes have 10 transitions with ~200-character states. Prints a table; asserts
nothing about time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

STEPS_PER_EPISODE = 10
BATCH_STEPS = 50_000


def run_arrow(n: int, root: Path) -> dict:
    from dreamgym_cli.store import ReplayStore, synthetic

    store = ReplayStore.open(root / "S", create=True)
    elapsed = 0.0
    for tasks, episodes, steps in synthetic.arrow_batches(n, STEPS_PER_EPISODE, BATCH_STEPS):
        start = time.perf_counter()
        store.append_arrow(tasks, episodes, steps)
        elapsed += time.perf_counter() - start
    return {"seconds": elapsed, "stored": _count(store)}


def run_jsonl(n: int, root: Path, embed: bool = False) -> dict:
    from dreamgym_cli.stages import ingest
    from dreamgym_cli.store import ReplayStore, synthetic

    data = root / "E.jsonl"
    synthetic.write_jsonl(data, n // STEPS_PER_EPISODE, STEPS_PER_EPISODE)
    config = ingest.IngestConfig(files=(data,), store=root / "S", batch_steps=BATCH_STEPS)
    start = time.perf_counter()
    ingest.run(config)
    elapsed = time.perf_counter() - start
    store = ReplayStore.open(root / "S")
    out = {"seconds": elapsed, "stored": _count(store), "file_mb": data.stat().st_size / 1e6}
    if embed:
        start = time.perf_counter()
        store.embed()
        out["embed_seconds"] = time.perf_counter() - start
        out["seconds"] += out["embed_seconds"]
    return out


def _count(store) -> int:
    return store.sql("SELECT count(*) AS n FROM steps").column("n")[0].as_py()


def one(mode: str, n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        if mode == "arrow":
            result = run_arrow(n, root)
        else:
            result = run_jsonl(n, root, embed=mode == "jsonl+embed")
        result["store_mb"] = sum(p.stat().st_size for p in (root / "S").rglob("*.parquet")) / 1e6
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--modes", default="arrow,jsonl")
    parser.add_argument("--embed", action="store_true", help="also jsonl+embed")
    parser.add_argument("--embed-size", type=int, default=10_000,
                        help="transitions for the jsonl+embed run (CPU encoding is slow)")
    parser.add_argument("--one", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return
    runs = [(m, int(n)) for n in args.sizes.split(",") for m in args.modes.split(",")]
    if args.embed:
        runs.append(("jsonl+embed", args.embed_size))
    table = Table("path", "transitions", "seconds", "transitions/s", "peak RSS MB", "store MB",
                  title="dreamgym ingest throughput (target: >= 100K transitions/s, no embeddings)")
    for mode, n in runs:
        proc = subprocess.run([sys.executable, __file__, "--one", mode, str(n)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            table.add_row(mode, f"{n:,}", "failed", proc.stderr.strip().splitlines()[-1][:60], "",
                          "")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        assert r["stored"] == n, (mode, n, r)  # a throughput figure for lost data means nothing
        table.add_row(mode, f"{n:,}", f"{r['seconds']:.2f}", f"{n / r['seconds']:,.0f}",
                      f"{r['peak_rss_mb']:.0f}", f"{r['store_mb']:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
