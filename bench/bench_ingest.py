"""Ingest throughput (transitions/s) into a replay store, at 10K / 100K / 1M synthetic transitions.

    .venv/bin/python bench/bench_ingest.py                 # all sizes, both paths
    .venv/bin/python bench/bench_ingest.py --sizes 10000 --embed [--embed-size 10000]

    .venv/bin/python bench/bench_ingest.py --sizes 100000 --modes jsonl,jsonl-per-record \
        --embed-compare 300                            # embedding paths + recall@10

Paths measured (each run in its own process, so peak memory is per run):
- `arrow`: `ReplayStore.append_arrow` with ready Arrow batches of 50K transitions (the store's
  fast path; building the batches is not timed).
- `jsonl`: `dreamgym ingest` on a canonical JSONL file, end to end (parse, validate, spool,
  commit, manifest); writing the file is not timed. Canonical JSONL takes the columnar reader
  (`canonical_fast.py`, which streams the file in 4 MiB blocks).
- `jsonl-per-record`: the same with the columnar reader switched off in that process: the
  record-by-record reader every file took before (the baseline).
- `jsonl+embed`: the same followed by `store.embed()` (needs `dreamgym_cli.store.retrieval`).

`--embed-compare N` times the encoder on N transitions three ways and reports retrieval
recall@10 of each against the first (today's vectors):
- `per-transition`: `Embedder.encode` of every transition's `transition_text` (today's path);
- `distinct`: `retrieval.encode_distinct` (each distinct text once; the same vectors);
- `short-keys`: task, action and a 240-character state encoded apart (each distinct piece once)
  and summed — shorter encoder inputs, different vectors.

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


def run_jsonl(n: int, root: Path, embed: bool = False, per_record: bool = False) -> dict:
    from dreamgym_cli import canonical_fast
    from dreamgym_cli.stages import ingest
    from dreamgym_cli.store import ReplayStore, synthetic

    if per_record:  # the baseline: this process never takes the columnar reader
        def declined(*args, **kwargs):
            raise canonical_fast.Declined("per-record baseline")

        canonical_fast.read_batches = declined

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
            result = run_jsonl(n, root, embed=mode == "jsonl+embed",
                               per_record=mode == "jsonl-per-record")
        result["store_mb"] = sum(p.stat().st_size for p in (root / "S").rglob("*.parquet")) / 1e6
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def embed_compare(n: int) -> list[tuple[str, float, float]]:
    """(path, transitions/s, recall@10 vs per-transition) on n synthetic transitions."""
    import numpy as np

    from dreamgym_cli.store import synthetic
    from dreamgym_cli.store.embed import get_embedder, transition_text
    from dreamgym_cli.store.retrieval import encode_distinct

    episodes = [synthetic.episode_object(i, 10) for i in range(-(-n // 10))]
    rows = [(e["task"]["instruction"], s["state"], s["action"]) for e in episodes
            for s in e["steps"]][:n]
    embedder = get_embedder()
    embedder.encode(["warm up"])
    texts = [transition_text(*r) for r in rows]
    timed = {}
    start = time.perf_counter()
    timed["per-transition"] = embedder.encode(texts)
    seconds = {"per-transition": time.perf_counter() - start}
    start = time.perf_counter()
    timed["distinct"] = encode_distinct(embedder, texts)
    seconds["distinct"] = time.perf_counter() - start
    start = time.perf_counter()
    parts = [encode_distinct(embedder, [f"{label}: {x[:240]}" for x in column])
             for label, column in zip(("task", "state", "action"), zip(*rows))]
    summed = parts[0] + parts[1] + parts[2]
    timed["short-keys"] = summed / np.linalg.norm(summed, axis=1, keepdims=True)
    seconds["short-keys"] = time.perf_counter() - start
    reference = _top10(timed["per-transition"])
    return [(name, n / seconds[name], _recall(reference, _top10(v))) for name, v in timed.items()]


def _top10(vectors):
    import numpy as np

    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)  # a query's own transition is not a neighbour
    return np.argsort(-scores, axis=1)[:, :10]


def _recall(reference, got) -> float:
    return float(sum(len(set(a) & set(b)) for a, b in zip(reference, got)) / reference.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--modes", default="arrow,jsonl")
    parser.add_argument("--embed", action="store_true", help="also jsonl+embed")
    parser.add_argument("--embed-size", type=int, default=10_000,
                        help="transitions for the jsonl+embed run (CPU encoding is slow)")
    parser.add_argument("--embed-compare", type=int, default=0, metavar="N",
                        help="time the embedding paths on N transitions, with recall@10")
    parser.add_argument("--one", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return
    if args.embed_compare:
        table = Table("path", "transitions/s", "speed-up", "recall@10 vs per-transition",
                      title=f"embedding {args.embed_compare:,} transitions")
        results = embed_compare(args.embed_compare)
        for name, rate, recall in results:
            table.add_row(name, f"{rate:,.1f}", f"{rate / results[0][1]:.1f}x", f"{recall:.3f}")
        Console().print(table)
        if not args.sizes:
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
