"""Retrieval benchmark: exact search vs HNSW in usearch, hnswlib and faiss-cpu; embedding throughput.

    .venv/bin/python bench/bench_retrieval.py                      # 10K, 100K, 1M, all libraries
    .venv/bin/python bench/bench_retrieval.py --sizes 10000 --libs exact,usearch --real

For each size and library: index build time (and vectors/s), p50/p99 latency of single queries
(one thread) and of batches of 64 queries (all threads), recall@10 against exact search, and the
ratio of each latency to exact search measured in the same process. `--real` adds a 10K run on real
all-MiniLM-L6-v2 embeddings of TextWorld-like transitions; the 100K / 1M vectors are SYNTHETIC
clustered unit vectors of dim 384 (embedding a million texts at a few hundred a second is out of
reach on a laptop CPU). Figures are printed, never asserted. `--max-build N` skips the approximate
libraries at sizes above N (and says so) to keep a run inside a time budget.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamgym_cli.store.index import exact_search  # noqa: E402

DIM = 384
K = 10
M = 16  # HNSW graph degree, the same for every library
EF_CONSTRUCTION = 128
EF_SEARCH = (32, 64, 128)


# ------------------------------------------------------------------------------------------
# Data


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def clustered_unit_vectors(n: int, n_queries: int, seed: int = 0, per_sub: int = 100,
                           subs_per_topic: int = 10, chunk: int = 100_000):
    """(data [n, 384], queries [n_queries, 384]): unit vectors from a two-level mixture.

    topic → sub-topic (cos ≈ 0.67 to its topic) → point (cos ≈ 0.86 to its sub-topic); points of one
    sub-topic have cosine ≈ 0.74 with each other, the range real embeddings of similar transitions
    fall in. The tree grows with n (about `per_sub` points per sub-topic), so the neighbourhood
    structure — and the difficulty for an approximate index — is the same at every size. Queries are
    fresh draws from the same sub-topics, not points of the data.
    """
    rng = np.random.default_rng(seed)
    n_subs = max(1, n // per_sub)
    n_topics = max(1, n_subs // subs_per_topic)
    topics = _unit(rng.standard_normal((n_topics, DIM), dtype=np.float32))
    offsets = _unit(rng.standard_normal((n_subs, DIM), dtype=np.float32))
    subs = _unit(topics[np.arange(n_subs) % n_topics] + 0.7 * offsets)
    out = np.empty((n + n_queries, DIM), dtype=np.float32)
    for start in range(0, len(out), chunk):
        m = min(chunk, len(out) - start)
        noise = _unit(rng.standard_normal((m, DIM), dtype=np.float32))
        out[start:start + m] = _unit(subs[rng.integers(0, n_subs, m)] + 0.6 * noise)
    return out[:n], out[n:]


def textworld_like_texts(n: int, seed: int) -> list[str]:
    """Transition texts shaped like TextWorld's (task, state, action), from templates."""
    from dreamgym_cli.store.embed import transition_text

    rng = np.random.default_rng(seed)
    rooms = "kitchen pantry bedroom bathroom cellar attic garden shed hallway study garage".split()
    things = ("apple key lamp book coin knife carrot box chest sofa table shelf fridge bowl "
              "potato onion map lantern sword shoe").split()
    colors = "red blue green old rusty shiny small wooden golden".split()
    verbs = ["take", "open", "drop", "eat", "close", "examine", "insert", "put"]
    texts = []
    for _ in range(n):
        room, goal = rng.choice(rooms), rng.choice(things)
        seen = rng.choice(things, size=4, replace=False)
        inv = rng.choice(things, size=2, replace=False)
        verb, obj = rng.choice(verbs), rng.choice(seen)
        instruction = f"Find the {rng.choice(colors)} {goal} and put it in the {rng.choice(rooms)}."
        state = (f"-= {room.title()} =- You are in a {room}. You see a {seen[0]}, a "
                 f"{rng.choice(colors)} {seen[1]}, a {seen[2]} and a {seen[3]}. Exits: "
                 f"{rng.choice(['north', 'south', 'east', 'west'])}. Inventory: {inv[0]}, {inv[1]}. "
                 f"Admissible: go north, look, inventory, {verb} {obj}, take {seen[1]}")
        texts.append(transition_text(instruction, state, f"{verb} {obj}"))
    return texts


# ------------------------------------------------------------------------------------------
# Candidates: build(vectors) -> object with search(queries, k, threads) -> ids [n, k]


class Exact:
    name = "exact"

    def build(self, vectors: np.ndarray, threads: int) -> None:
        self.vectors = vectors

    def search(self, queries: np.ndarray, k: int, threads: int) -> np.ndarray:
        return exact_search(self.vectors, queries, k)[0]

    def set_ef(self, ef: int) -> None:
        """Exact search has no search breadth to set."""


class Usearch:
    def __init__(self, dtype: str = "f32"):
        self.dtype, self.name = dtype, f"usearch-{dtype}"

    def build(self, vectors, threads):
        from usearch.index import Index

        self.index = Index(ndim=DIM, metric="ip", dtype=self.dtype, connectivity=M,
                           expansion_add=EF_CONSTRUCTION)
        self.index.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=threads)

    def set_ef(self, ef):
        self.index.expansion_search = ef

    def search(self, queries, k, threads):
        return self.index.search(queries, k, threads=threads).keys.reshape(len(queries), k)


class Hnswlib:
    name = "hnswlib"

    def build(self, vectors, threads):
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=DIM)
        self.index.init_index(max_elements=len(vectors), ef_construction=EF_CONSTRUCTION, M=M)
        self.index.add_items(vectors, np.arange(len(vectors)), num_threads=threads)

    def set_ef(self, ef):
        self.index.set_ef(ef)

    def search(self, queries, k, threads):
        return self.index.knn_query(queries, k=k, num_threads=threads)[0]


class Faiss:
    name = "faiss-hnsw"

    def build(self, vectors, threads):
        import faiss

        faiss.omp_set_num_threads(threads)
        self.index = faiss.IndexHNSWFlat(DIM, M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        self.index.add(vectors)

    def set_ef(self, ef):
        self.index.hnsw.efSearch = ef

    def search(self, queries, k, threads):
        import faiss

        faiss.omp_set_num_threads(threads)
        return self.index.search(queries, k)[1]


CANDIDATES = {"exact": Exact, "usearch": Usearch, "usearch-f16": lambda: Usearch("f16"),
              "hnswlib": Hnswlib, "faiss": Faiss}


# ------------------------------------------------------------------------------------------
# Measurement


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


def latencies(lib, queries: np.ndarray, batch: int, threads: int, repeats: int) -> np.ndarray:
    """Milliseconds per call of `batch` queries, over `repeats` calls (after one warm-up call)."""
    lib.search(queries[:batch], K, threads)
    out = []
    for r in range(repeats):
        start = (r * batch) % (len(queries) - batch + 1)
        q = queries[start:start + batch]
        t0 = time.perf_counter()
        lib.search(q, K, threads)
        out.append((time.perf_counter() - t0) * 1000)
    return np.asarray(out)


def bench_size(data: np.ndarray, queries: np.ndarray, libs: list[str], threads: int,
               label: str, repeats: int, max_build: int) -> list[dict]:
    truth = exact_search(data, queries, K)[0]
    rows, exact_ms = [], {}
    for name in libs:
        if name != "exact" and len(data) > max_build:
            print(f"  {name}: skipped at {len(data):,} (--max-build {max_build:,})", file=sys.stderr)
            continue
        lib = CANDIDATES[name]()
        t0 = time.perf_counter()
        lib.build(data, threads)
        build_s = time.perf_counter() - t0
        for ef in ([0] if name == "exact" else EF_SEARCH):
            lib.set_ef(ef)
            row = {"data": label, "n": len(data), "lib": name, "ef": ef or None,
                   "build_s": None if name == "exact" else round(build_s, 3),
                   "build_vps": None if name == "exact" else round(len(data) / build_s),
                   "recall@10": round(recall_at_k(lib.search(queries, K, threads), truth), 4)}
            for batch, thr in ((1, 1), (64, threads)):
                reps = repeats if batch == 1 else max(5, repeats // 20)
                if name == "exact" and len(data) >= 1_000_000:
                    reps = max(5, reps // 10)  # ~0.1-1 s a call: a few calls give p50 well
                ms = latencies(lib, queries, batch, thr, reps)
                p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
                if name == "exact":
                    exact_ms[batch] = p50
                row[f"b{batch}_p50_ms"], row[f"b{batch}_p99_ms"] = round(p50, 4), round(p99, 4)
                row[f"b{batch}_speedup_vs_exact"] = round(exact_ms.get(batch, np.nan) / p50, 1)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
        del lib
        gc.collect()
    return rows


def bench_embedder(n: int) -> dict:
    from dreamgym_cli.store.embed import get_embedder

    t0 = time.perf_counter()
    embedder = get_embedder()
    load_s = time.perf_counter() - t0
    texts = textworld_like_texts(n, seed=7)
    embedder.encode(texts[:64])  # warm-up
    t0 = time.perf_counter()
    vectors = embedder.encode(texts, batch_size=64)
    secs = time.perf_counter() - t0
    return {"load_s": round(load_s, 2), "texts": n, "seconds": round(secs, 2),
            "sentences_per_s": round(n / secs, 1), "vectors": vectors, "texts_list": texts}


def bench_store_retrieve(n_steps: int, repeats: int) -> dict:
    """End to end `ReplayStore.retrieve` (index search + step lookup in DuckDB) on a store of
    n_steps synthetic transitions whose embeddings are synthetic unit vectors (no model calls)."""
    import tempfile

    from dreamgym_cli.store import ReplayStore, retrieval, synthetic
    from dreamgym_cli.store.embed import default_embedder_id

    with tempfile.TemporaryDirectory() as tmp:
        store = ReplayStore.open(Path(tmp) / "S", create=True)
        for tasks, episodes, steps in synthetic.arrow_batches(n_steps, batch_steps=50_000):
            store.append_arrow(tasks, episodes, steps)
        hashes = store.sql("SELECT DISTINCT content_hash FROM steps").column(0).to_pylist()
        vectors, queries = clustered_unit_vectors(len(hashes), 64 * 20)
        store.append_table("embeddings", retrieval.embeddings_table(
            hashes, default_embedder_id(), vectors))
        t0 = time.perf_counter()
        index, _ = retrieval.sync_index(store, default_embedder_id())
        build_s = time.perf_counter() - t0
        out = {"steps": n_steps, "vectors": len(index), "approximate": index.approximate,
               "index_build_s": round(build_s, 2)}
        for batch in (1, 64):
            store.retrieve(queries[:batch], k=K)  # warm-up
            ms = []
            for r in range(max(5, repeats // (10 if batch == 1 else 50))):
                q = queries[(r * batch) % (len(queries) - batch + 1):][:batch]
                t0 = time.perf_counter()
                store.retrieve(q, k=K)
                ms.append((time.perf_counter() - t0) * 1000)
            out[f"b{batch}_p50_ms"] = round(float(np.percentile(ms, 50)), 2)
            out[f"b{batch}_p99_ms"] = round(float(np.percentile(ms, 99)), 2)
        return out


def print_table(rows: list[dict]) -> None:
    head = ("data", "n", "lib", "ef", "build_s", "build_vps", "recall@10", "b1_p50_ms", "b1_p99_ms",
            "b1_speedup_vs_exact", "b64_p50_ms", "b64_p99_ms", "b64_speedup_vs_exact")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(r.get(h, "")) for h in head) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--libs", default="exact,usearch,usearch-f16,hnswlib,faiss")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1000, help="timed single-query calls")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-build", type=int, default=10**9,
                        help="skip approximate libraries at sizes above this (time budget)")
    parser.add_argument("--real", action="store_true", help="also run 10K real embeddings")
    parser.add_argument("--embed", type=int, default=2000, help="texts for embedding throughput")
    parser.add_argument("--store-steps", type=int, default=30_000,
                        help="steps in the store for the end-to-end retrieve timing (0: skip)")
    args = parser.parse_args()
    libs = args.libs.split(",")
    rows = []
    print(f"# {args.threads} threads; HNSW M={M}, ef_construction={EF_CONSTRUCTION}; k={K}",
          file=sys.stderr)
    if args.embed or args.real:
        emb = bench_embedder(10_000 + args.queries if args.real else args.embed)
        print(f"embedding: {emb['sentences_per_s']} sentences/s ({emb['texts']} TextWorld-like "
              f"transition texts, batch 64, {emb['seconds']} s; model load {emb['load_s']} s)")
        if args.real:
            vecs = emb["vectors"]
            rows += bench_size(vecs[:10_000], vecs[10_000:], libs, args.threads,
                               "real MiniLM", args.repeats, args.max_build)
    for n in (int(s) for s in args.sizes.split(",") if s):
        data, queries = clustered_unit_vectors(n, args.queries)
        rows += bench_size(data, queries, libs, args.threads, "synthetic", args.repeats,
                           args.max_build)
        del data, queries
        gc.collect()
    if args.store_steps:
        e2e = bench_store_retrieve(args.store_steps, args.repeats)
        print(f"store.retrieve end to end (k={K}, synthetic vectors): {json.dumps(e2e)}")
    print("\nSYNTHETIC = clustered unit vectors (dim 384), not real embeddings.\n")
    print_table(rows)


if __name__ == "__main__":
    main()
