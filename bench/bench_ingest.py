"""Ingest throughput (transitions/s) into a replay store, at 10K / 100K / 1M synthetic transitions.

    .venv/bin/python bench/bench_ingest.py                 # all sizes, both paths
    .venv/bin/python bench/bench_ingest.py --sizes 10000 --embed [--embed-size 10000]

    .venv/bin/python bench/bench_ingest.py --sizes 100000,1000000 --modes jsonl,jsonl-per-record
    .venv/bin/python bench/bench_ingest.py --sizes "" --embed-compare 100000 \
        --embed-file real.jsonl                      # embedding paths + recall@10, real data
    ... --embed-compare 100000 --embed-file real.jsonl --embed-keys full --save-reference ref.npy
    ... --embed-compare 100000 --embed-file real.jsonl --embed-keys parts,full-bf16 \
        --reference ref.npy                          # today's vectors from an earlier run

Paths measured (each run in its own process, so peak memory is per run):
- `arrow`: `ReplayStore.append_arrow` with ready Arrow batches of 50K transitions (the store's
  fast path; building the batches is not timed).
- `jsonl`: `dreamgym ingest` on a canonical JSONL file, end to end (parse, validate, spool,
  commit, manifest); writing the file is not timed. Canonical JSONL takes the columnar reader
  (`canonical_fast.py`, which streams the file in 4 MiB blocks).
- `jsonl-per-record`: the same with the columnar reader switched off in that process: the
  record-by-record reader every file took before (the baseline).
- `jsonl+embed`: the same followed by `store.embed()` (needs `dreamgym_cli.store.retrieval`).

`--embed-compare N [--embed-file real.jsonl]` times the encoder on N transitions (synthetic, or
the first N of a canonical JSONL file of real ones) and reports recall@10 against today's vectors:
- `per-transition`: `Embedder.encode` of every transition's `transition_text` (today's path),
  timed on a random sample (`--embed-sample`) in slices interleaved with the others' chunks;
- `store keys=full`: `retrieval.TransitionEncoder(keys="full")`, what `store.embed()` runs: each
  distinct text once (the same vectors, checked on the sample);
- `store keys=parts`: task, action and state encoded apart, each distinct piece once, their
  tokens pooled together (`embed.py`) — shorter and fewer encoder inputs, different vectors;
- `store keys=full-bf16`: the full keys' distinct texts through the encoder in bfloat16.
recall@10 is over `--recall-queries` random transitions as queries against all N, ties counted.
Today's vectors for all N are the full keys' (the encoder takes ~30 min at 100K on 2 busy cores):
`--save-reference` keeps them, `--reference` reads them back instead of running `full` (checked
against today's path on the timed sample).

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


def embed_rows(n: int, path: Path | None) -> list[tuple[str, str, str]]:
    """(instruction, state, action) of n transitions: the first n of a canonical JSONL file (real
    data, e.g. from `dreamgym collect`), else synthetic ones."""
    from dreamgym_cli.store import synthetic

    rows: list[tuple[str, str, str]] = []
    if path is None:
        episodes = (synthetic.episode_object(i, 10) for i in range(-(-n // 10)))
    else:
        episodes = (json.loads(line) for line in open(path, encoding="utf-8") if line.strip())
    for e in episodes:
        rows += [(e["task"]["instruction"], s["state"], s["action"]) for s in e["steps"]]
        if len(rows) >= n:
            break
    if len(rows) < n:
        raise SystemExit(f"{path} holds {len(rows)} transitions, fewer than {n}")
    return rows[:n]


def embed_compare(rows: list[tuple[str, str, str]], sample: int, queries: int,
                  chunks: int = 8, keys_paths: tuple[str, ...] = ("full", "parts", "full-bf16"),
                  reference=None) -> dict:
    """Transitions/s of today's per-transition path and of the store's keys, recall@10 against
    today's vectors. Each keys path runs in `chunks` chunks of the rows (as `store.embed` runs in
    chunks, its cache spanning them); today's path is timed on a random sample of the rows, in
    slices run one before each chunk, so a change in the machine's load during the run weighs on
    both sides alike. Today's vectors for all rows are the full keys' (the same function of the
    same text, checked on the sample), or the first N rows of the `.npy` file `reference` (from
    an earlier run on the same file), read once the timing is done (it may still be being
    written when this starts)."""
    import numpy as np

    from dreamgym_cli.store.embed import get_embedder, transition_parts, transition_text
    from dreamgym_cli.store.retrieval import TransitionEncoder

    embedder = get_embedder()
    embedder.encode(["warm up"])
    texts = [transition_text(*r) for r in rows]
    rng = np.random.default_rng(0)
    sampled = np.sort(rng.choice(len(rows), min(sample, len(rows)), replace=False))
    slices = iter(np.array_split(rng.permutation(sampled), len(keys_paths) * chunks))
    baseline: dict[int, np.ndarray] = {}
    base_seconds = 0.0
    out = {"rows": len(rows), "sample": len(sampled), "distinct_texts": len(set(texts)),
           "distinct_pieces": [len({transition_parts(*r)[k] for r in rows}) for k in range(3)],
           "paths": {}}
    vectors = {}
    for keys in keys_paths:
        encoder, parts, seconds = TransitionEncoder(embedder, keys), [], 0.0
        for chunk in np.array_split(np.arange(len(rows)), chunks):
            some = next(slices)
            start = time.perf_counter()
            baseline.update(zip(some.tolist(), embedder.encode([texts[i] for i in some])))
            base_seconds += time.perf_counter() - start
            columns = [list(c) for c in zip(*(rows[i] for i in chunk))]
            start = time.perf_counter()
            parts.append(encoder.encode(*columns))
            seconds += time.perf_counter() - start
        vectors[keys] = np.concatenate(parts)
        out["paths"][keys] = {"seconds": seconds}
    today = np.stack([baseline[i] for i in sampled.tolist()])
    reference = vectors["full"] if reference is None else np.load(reference)[:len(rows)]
    if reference.shape != (len(rows), 384):
        raise SystemExit(f"the reference holds {reference.shape}, expected ({len(rows)}, 384)")
    out["max_diff_full_vs_per_transition"] = float(np.abs(reference[sampled] - today).max())
    out["reference"] = vectors.get("full", reference)
    out["per_transition_rate"] = len(sampled) / base_seconds
    asked = np.sort(rng.choice(len(rows), min(queries, len(rows)), replace=False))
    for keys, v in vectors.items():
        path = out["paths"][keys]
        path["rate"] = len(rows) / path["seconds"]
        path["recall@10"] = recall_at_10(reference, v, asked)
        path["min_cosine_to_today"] = float((v * reference).sum(1).min())
    return out


def recall_at_10(reference, vectors, asked) -> float:
    """Mean share of each asked row's 10 nearest neighbours by `vectors` (itself excluded) that
    are among its 10 nearest by `reference`, ties included: a neighbour scoring as high by the
    reference as the reference's 10th counts (identical texts have identical vectors, and which
    of several equal copies ranks first is arbitrary)."""
    import numpy as np

    hits = 0.0
    for chunk in np.array_split(asked, max(1, len(asked) // 256)):
        rows = np.arange(len(chunk))
        ref = reference[chunk] @ reference.T
        ref[rows, chunk] = -np.inf
        tenth = -np.partition(-ref, 9, axis=1)[:, 9]
        got = vectors[chunk] @ vectors.T
        got[rows, chunk] = -np.inf
        top = np.argpartition(-got, 9, axis=1)[:, :10]
        hits += float((np.take_along_axis(ref, top, 1) >= tenth[:, None] - 1e-6).sum())
    return hits / (10 * len(asked))


def print_embed_compare(r: dict, source: str) -> None:
    table = Table("path", "transitions/s", "speed-up", "texts encoded",
                  "recall@10 vs today's vectors",
                  title=f"embedding {r['rows']:,} {source} transitions "
                        f"({r['distinct_texts']:,} distinct texts; distinct task / action / state "
                        f"pieces {' / '.join(f'{n:,}' for n in r['distinct_pieces'])})")
    base = r["per_transition_rate"]
    table.add_row(f"per-transition (today's; timed on a random {r['sample']:,})",
                  f"{base:,.1f}", "1.0x", f"{r['rows']:,}", "1.000")
    encoded = {"full": r["distinct_texts"], "full-bf16": r["distinct_texts"],
               "parts": sum(r["distinct_pieces"])}
    for keys, p in r["paths"].items():
        table.add_row(f"store keys={keys}", f"{p['rate']:,.1f}", f"{p['rate'] / base:.1f}x",
                      f"{encoded[keys]:,}", f"{p['recall@10']:.3f}")
    Console().print(table)
    print(f"max |reference (full keys) - per-transition| over the sample: "
          f"{r['max_diff_full_vs_per_transition']:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--modes", default="arrow,jsonl")
    parser.add_argument("--embed", action="store_true", help="also jsonl+embed")
    parser.add_argument("--embed-size", type=int, default=10_000,
                        help="transitions for the jsonl+embed run (CPU encoding is slow)")
    parser.add_argument("--embed-compare", type=int, default=0, metavar="N",
                        help="time the embedding paths on N transitions, with recall@10")
    parser.add_argument("--embed-file", type=Path, metavar="JSONL",
                        help="--embed-compare on the first N transitions of this canonical JSONL "
                             "(real data) instead of synthetic ones")
    parser.add_argument("--embed-sample", type=int, default=2000, metavar="S",
                        help="time today's per-transition path on a random sample of S")
    parser.add_argument("--recall-queries", type=int, default=2000, metavar="Q",
                        help="recall@10 averaged over Q random transitions as queries")
    parser.add_argument("--embed-keys", default="full,parts,full-bf16",
                        help="the store keys paths --embed-compare times")
    parser.add_argument("--reference", type=Path, metavar="NPY",
                        help="today's vectors of the first N or more transitions of the same "
                             "file (from --save-reference)")
    parser.add_argument("--save-reference", type=Path, metavar="NPY",
                        help="write today's vectors (the full keys') of the N transitions")
    parser.add_argument("--one", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return
    if args.embed_compare:
        rows = embed_rows(args.embed_compare, args.embed_file)
        import numpy as np

        if args.reference is None and "full" not in args.embed_keys.split(","):
            raise SystemExit("recall@10 needs today's vectors: time full or pass --reference")
        result = embed_compare(rows, args.embed_sample, args.recall_queries,
                               keys_paths=tuple(args.embed_keys.split(",")),
                               reference=args.reference)
        if args.save_reference:
            np.save(args.save_reference, result["reference"])
        del result["reference"]
        print_embed_compare(result, "real" if args.embed_file else "synthetic")
        print(json.dumps(result))
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
