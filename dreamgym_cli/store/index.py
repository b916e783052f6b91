"""A vector index over unit vectors (inner product = cosine): exact below a size, HNSW above it.

`VectorIndex` is the one interface: `add(ids, vectors)` incrementally, `search(queries, k)` for a
batch, `save(dir)` / `VectorIndex.load(dir)`. Below `exact_below` vectors (20K) it searches
exactly with numpy (one batched matmul per chunk + argpartition) — at that size exact search
costs about a millisecond and is always right. When it grows past the threshold it builds an
approximate HNSW index (usearch) from its vectors and extends that incrementally afterwards.

Files (no pickle anywhere): `header.json` (format, embedder id, dim, count, metric, kind) written
last, plus either `vectors.npy` + `ids.npy` (exact; loaded with allow_pickle=False) or
`index.usearch` (usearch's own format). A header whose count disagrees with the data files makes
`load` raise `IndexMismatch`, and callers rebuild.

Choice of library — by measurement (bench/bench_retrieval.py, this 2-core CPU machine shared with
other jobs; synthetic clustered unit vectors of dim 384 at 100K/1M; HNSW M=16, ef_construction=128
for every library; k=10; single queries on one thread, batches of 64 on all threads):

Measured while 4-6 other jobs saturated both cores (load 7-10), so builds and p99 are noisy; ratios are against exact search in the same process. recall@10 / single-query
p50 ms / batch-of-64 p50 ms / build vectors/s, at ef_search 64:

    data            n      exact (p50 1 / 64)     usearch f32             hnswlib                 faiss HNSW
    real MiniLM   10K    12.0 / 62.9 ms        .998 .29 / 43 / 832     .999 .14 / 21 / 2190    .998 .14 / 40 / 1254
    synthetic     10K    19.9 / 66.8 ms        1.00 .13 / 20 / 1793    1.00 .07 / 13 / 3229    1.00 .07 / 32 / 1940
    synthetic    100K    32.1 / 344 ms         .999 .28 / 32 / 774     .998 .13 / 12 / 2691    .999 .16 / 32 / 2171
    synthetic      1M    85.0 / 1973 ms        .881 .73 / 136 / 840    (not built: ~20 min each here)
                      at ef_search 128:      .960 1.36 / 164 ms (ratio to exact: 63x single, 12x batch)

At 1M the usearch build took 1190 s (840 vectors/s on the loaded 2 cores); hence the default
ef_search is 128: recall@10 .960 with 1.36 ms single-query p50 at 1M (target <= 2 ms, >= .95: met).
(usearch f16 storage: recall .996-.998, build 2-2.5x faster than f32, half the memory.) All three
reach recall@10 >= 0.99 at ef 64 up to 100K with single-query p50 well under 2 ms; the faster
library per query was hnswlib by ~0.1 ms, and build throughput swapped order between two runs
(an earlier run, on an earlier version of the synthetic data: usearch 988/s, hnswlib 537/s at
100K), i.e. the differences are within this machine's noise. usearch is kept because of what the others lack or make awkward: incremental
`add` with no capacity management (hnswlib needs `resize_index`), a single self-describing file
(dimensions, metric, scalar type) read without pickle, `contains` for id checks, f16/i8 storage
to halve or quarter memory at 1M+, and memory-mapped `view` for read-only use. It is already the
core dependency; hnswlib and faiss stay in the `bench` extra for this comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dreamgym_cli.artifacts import atomic_path, write_atomic

FORMAT = "dreamgym.vector-index/1"
METRIC = "ip"  # vectors are unit length: inner product is cosine similarity
EXACT_BELOW = 20_000
CONNECTIVITY = 16  # HNSW "M"
EXPANSION_ADD = 128  # HNSW "ef_construction"
EXPANSION_SEARCH = 128  # HNSW "ef" at query time: ef 64 fell to recall .88 at 1M (see above)


class IndexMismatch(Exception):
    """The files of a saved index disagree with each other or with what the caller expects."""


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int,
                 budget: int = 1 << 24) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows of `vectors` [n, d] by inner product for each query [q, d].

    Returns (rows int64 [q, k], scores float32 [q, k]), best first; when n < k the tail is padded
    with row -1 and score -inf. The score matrix is built in chunks of about `budget` floats so a
    big batch over a million vectors stays within tens of MB.
    """
    q, n = len(queries), len(vectors)
    rows = np.full((q, k), -1, dtype=np.int64)
    scores = np.full((q, k), -np.inf, dtype=np.float32)
    if n == 0 or q == 0 or k == 0:
        return rows, scores
    chunk = max(1024, budget // max(q, 1))
    best_rows, best_scores = None, None
    for start in range(0, n, chunk):
        block = queries @ vectors[start:start + chunk].T  # [q, c]
        take = min(k, block.shape[1])
        part = np.argpartition(-block, take - 1, axis=1)[:, :take]  # [q, take], unordered
        cand_rows = part + start
        cand_scores = np.take_along_axis(block, part, axis=1)
        if best_rows is not None:
            cand_rows = np.concatenate([best_rows, cand_rows], axis=1)
            cand_scores = np.concatenate([best_scores, cand_scores], axis=1)
            keep = np.argpartition(-cand_scores, min(k, cand_scores.shape[1]) - 1, axis=1)[:, :k]
            cand_rows = np.take_along_axis(cand_rows, keep, axis=1)
            cand_scores = np.take_along_axis(cand_scores, keep, axis=1)
        best_rows, best_scores = cand_rows, cand_scores
    order = np.argsort(-best_scores, axis=1, kind="stable")
    m = best_rows.shape[1]
    rows[:, :m] = np.take_along_axis(best_rows, order, axis=1)
    scores[:, :m] = np.take_along_axis(best_scores, order, axis=1)
    return rows, scores


class VectorIndex:
    """ids (non-negative int64) → unit float32 vectors; exact below `exact_below`, HNSW above."""

    def __init__(self, dim: int, *, embedder: str = "", exact_below: int = EXACT_BELOW,
                 expansion_search: int = EXPANSION_SEARCH):
        self.dim, self.embedder, self.exact_below = dim, embedder, exact_below
        self.expansion_search = expansion_search
        self._ids = np.empty(0, dtype=np.int64)  # exact mode
        self._vectors = np.empty((0, dim), dtype=np.float32)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # appended, not yet concatenated
        self._hnsw = None  # usearch.index.Index once approximate

    # -- state -----------------------------------------------------------------------------

    @property
    def approximate(self) -> bool:
        return self._hnsw is not None

    def __len__(self) -> int:
        if self._hnsw is not None:
            return len(self._hnsw)
        return len(self._ids) + sum(len(i) for i, _ in self._pending)

    def _flush(self) -> None:
        if self._pending:
            self._ids = np.concatenate([self._ids] + [i for i, _ in self._pending])
            self._vectors = np.concatenate([self._vectors] + [v for _, v in self._pending])
            self._pending = []

    # -- add / search ----------------------------------------------------------------------

    def add(self, ids, vectors) -> None:
        """Add vectors [n, dim] under new ids [n]; an id already present is a ValueError."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise ValueError(f"expected ids [n] and vectors [n, {self.dim}], got {ids.shape} and "
                             f"{vectors.shape}")
        if len(ids) == 0:
            return
        if (ids < 0).any() or len(np.unique(ids)) != len(ids) or self._contains_any(ids):
            raise ValueError("ids must be non-negative, unique and not yet in the index")
        if self._hnsw is None:
            self._pending.append((ids, vectors))
            if len(self) >= self.exact_below:
                self._flush()
                self._build_hnsw(self._ids, self._vectors)
                self._ids = np.empty(0, dtype=np.int64)
                self._vectors = np.empty((0, self.dim), dtype=np.float32)
        else:
            self._hnsw.add(ids.astype(np.uint64), vectors, threads=0)

    def _contains_any(self, ids: np.ndarray) -> bool:
        if self._hnsw is not None:
            return bool(np.any(self._hnsw.contains(ids.astype(np.uint64))))
        self._flush()
        return bool(np.isin(ids, self._ids).any())

    def _build_hnsw(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        from usearch.index import Index

        self._hnsw = Index(ndim=self.dim, metric=METRIC, dtype="f32", connectivity=CONNECTIVITY,
                           expansion_add=EXPANSION_ADD, expansion_search=self.expansion_search)
        self._hnsw.add(ids.astype(np.uint64), vectors, threads=0)

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [n, k], scores float32 [n, k]) best first; -1 / -inf where fewer than k."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"expected queries [n, {self.dim}], got {queries.shape}")
        if self._hnsw is None:
            self._flush()
            rows, scores = exact_search(self._vectors, queries, k)
            ids = np.where(rows >= 0, self._ids[np.maximum(rows, 0)] if len(self._ids) else -1, -1)
            return ids.astype(np.int64), scores
        return self._search_hnsw(queries, k)

    def _search_hnsw(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        if len(queries) == 0 or k == 0:
            return ids, scores
        # One thread for a single query (thread start-up costs more than it saves), all for a batch.
        found = self._hnsw.search(queries, k, threads=1 if len(queries) == 1 else 0)
        keys = np.asarray(found.keys).reshape(len(queries), -1)
        dist = np.asarray(found.distances, dtype=np.float32).reshape(len(queries), -1)
        counts = np.asarray(getattr(found, "counts", [keys.shape[1]])).reshape(-1)
        valid = np.arange(keys.shape[1])[None, :] < counts.reshape(-1, 1)
        m = keys.shape[1]
        ids[:, :m] = np.where(valid, keys.astype(np.int64), -1)
        scores[:, :m] = np.where(valid, 1.0 - dist, -np.inf)  # usearch "ip" distance = 1 - dot
        return ids, scores

    # -- files -----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write the index into `directory`; the header goes last, so a crash leaves a mismatch
        that `load` detects rather than a half-written index that looks complete."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "header.json").unlink(missing_ok=True)
        if self._hnsw is None:
            self._flush()
            _save_npy(directory / "ids.npy", self._ids)
            _save_npy(directory / "vectors.npy", self._vectors)
            (directory / "index.usearch").unlink(missing_ok=True)
        else:
            with atomic_path(directory / "index.usearch") as tmp:
                self._hnsw.save(str(tmp))
            for stale in ("ids.npy", "vectors.npy"):
                (directory / stale).unlink(missing_ok=True)
        header = {"format": FORMAT, "embedder": self.embedder, "dim": self.dim,
                  "count": len(self), "metric": METRIC,
                  "kind": "hnsw-usearch" if self._hnsw is not None else "exact",
                  "exact_below": self.exact_below, "expansion_search": self.expansion_search}
        write_atomic(directory / "header.json", json.dumps(header, indent=1))

    @classmethod
    def load(cls, directory: str | Path, *, embedder: str | None = None,
             dim: int | None = None) -> "VectorIndex":
        """Read an index; IndexMismatch when files are missing, inconsistent or for another
        embedder/dim."""
        directory = Path(directory)
        try:
            header = json.loads((directory / "header.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IndexMismatch(f"no readable header in {directory}: {e}") from None
        if header.get("format") != FORMAT or header.get("metric") != METRIC:
            raise IndexMismatch(f"{directory}: unknown index format {header.get('format')!r}")
        for name, want in (("embedder", embedder), ("dim", dim)):
            if want is not None and header.get(name) != want:
                raise IndexMismatch(f"{directory}: index is for {name} {header.get(name)!r}, "
                                    f"not {want!r}")
        index = cls(int(header["dim"]), embedder=header.get("embedder", ""),
                    exact_below=int(header.get("exact_below", EXACT_BELOW)),
                    expansion_search=int(header.get("expansion_search", EXPANSION_SEARCH)))
        try:
            if header.get("kind") == "exact":
                index._ids = np.load(directory / "ids.npy", allow_pickle=False)
                index._vectors = np.load(directory / "vectors.npy", allow_pickle=False)
            else:
                index._load_hnsw(directory / "index.usearch")
        except (OSError, ValueError, RuntimeError) as e:
            raise IndexMismatch(f"{directory}: cannot read index data: {e}") from None
        if len(index) != header.get("count") or index._vectors.shape[1:] != (index.dim,):
            raise IndexMismatch(f"{directory}: header says {header.get('count')} vectors, "
                                f"files hold {len(index)}")
        return index

    def _load_hnsw(self, path: Path) -> None:
        from usearch.index import Index

        meta = Index.metadata(str(path)) if path.is_file() else None
        if not meta or meta.get("dimensions") != self.dim:
            raise IndexMismatch(f"{path}: missing or not a {self.dim}-d usearch index")
        self._hnsw = Index(ndim=self.dim, metric=METRIC, dtype=meta["kind_scalar"],
                           connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
                           expansion_search=self.expansion_search)
        self._hnsw.load(str(path))


def _save_npy(path: Path, array: np.ndarray) -> None:
    # a file object: np.save would append ".npy" to the temporary path
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
