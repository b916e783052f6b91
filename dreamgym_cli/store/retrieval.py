"""Embeddings of a store's transitions and top-k retrieval over them (`ReplayStore.embed/retrieve`).

    n = store.embed()                       # embed steps not yet embedded (incremental)
    hits = store.retrieve([{"instruction": ..., "state": ..., "action": ...}], k=5, env="textworld")

Both take `keys` ("full", the default, "parts" or "full-bf16"; see embed.py): how a transition
becomes a vector. Embeddings live beside the steps as the extra table `embeddings`
(content_hash, embedder, vector float32[384]), `embedder` naming the model and the keys
(`embed.vectors_id`): one row per distinct transition content and embedder, so identical
transitions recorded by two episodes share a vector. Each distinct text (full, full-bf16) or
piece (parts) is encoded once per `embed` call, not once per chunk: a cache of up to CACHE_TEXTS
encodings spans the call's chunks. The index over them
lives in `S/index/<embedder slug>/`: a `VectorIndex` (see index.py) whose ids are positions in
`keys.npy`, the content hashes in the order the embeddings table holds them. The index is valid
while its keys are a prefix of that order; it is then extended with the rest, otherwise rebuilt.

A retrieved transition is one step with that content (the first by episode_id, t that passes the
filters), with its `score` (cosine similarity to the query). The step fields come from one DuckDB
query per batch over the steps segments; it dominates end-to-end latency (bench, 25K steps on the
loaded 2-core machine: p50 12 ms for one query, 38 ms for a batch of 64, vs ~0.3 ms in the index).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dreamgym_cli.artifacts import atomic_path
from dreamgym_cli.errors import InputError
from dreamgym_cli.store.embed import (
    DEFAULT_KEYS, DIM, Embedder, embedder_slug, get_embedder, transition_parts, transition_text,
    unit_rows, vectors_id,
)
from dreamgym_cli.store.index import IndexMismatch, VectorIndex

TABLE = "embeddings"
EMBED_CHUNK = 8192  # vectors committed per segment: an interrupted embed keeps what it finished
CACHE_TEXTS = 65_536  # encodings kept across chunks of one embed call (~100 MB at most)
STEP_FIELDS = ("episode_id", "t", "task_id", "env", "source", "state", "action", "next_state",
               "reward", "done", "success", "reasoning", "content_hash")
QUERY_FIELDS = ("instruction", "state", "action")

# (store path, embedder id) -> (catalog generation, VectorIndex, keys): the index stays in memory
# between calls in one process; a new catalog generation triggers an incremental sync.
_LOADED: dict[tuple[str, str], tuple[int, VectorIndex, np.ndarray]] = {}


def index_dir(store, embedder_id: str) -> Path:
    return Path(store.path) / "index" / embedder_slug(embedder_id)


def embeddings_table(hashes: Sequence[str], embedder_id: str, vectors: np.ndarray) -> pa.Table:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
    return pa.table({"content_hash": pa.array(list(hashes), pa.string()),
                     "embedder": pa.array([embedder_id] * len(hashes), pa.string()),
                     "vector": pa.FixedSizeListArray.from_arrays(flat, DIM)})


# ------------------------------------------------------------------------------------------
# Embedding


def pending_transitions(store, embedder_id: str) -> pa.Table:
    """content_hash, instruction, state, action of distinct steps with no embedding for embedder_id."""
    already = ("AND s.content_hash NOT IN (SELECT content_hash FROM embeddings WHERE embedder = $e)"
               if TABLE in store.tables() else "")
    con = store.connect(read_only=True)
    try:
        return con.sql(
            "SELECT s.content_hash, any_value(coalesce(k.instruction, '')) AS instruction, "
            "any_value(s.state) AS state, any_value(s.action) AS action, "
            "min(s.episode_id) AS first_episode, min(s.t) AS first_t "
            "FROM steps s LEFT JOIN tasks k ON k.task_id = s.task_id "
            f"WHERE true {already} GROUP BY s.content_hash ORDER BY first_episode, first_t, "
            "s.content_hash", params={"e": embedder_id} if already else None).to_arrow_table()
    finally:
        con.close()


def embed_pending(store, batch_size: int = 64, progress: bool = True,
                  embedder: Embedder | None = None, keys: str = DEFAULT_KEYS) -> int:
    """Embed the steps without an embedding for these keys, extend the index; returns how many."""
    with store.lock():
        embedder_id = vectors_id(keys, embedder.embedder_id if embedder is not None else None)
        pending = pending_transitions(store, embedder_id)
        if pending.num_rows:
            embedder = embedder or get_embedder()
            _embed_in_chunks(store, TransitionEncoder(embedder, keys, batch_size), pending,
                             progress)
        sync_index(store, embedder_id, progress=progress)
    return pending.num_rows


def _embed_in_chunks(store, encoder: "TransitionEncoder", pending: pa.Table,
                     progress: bool) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("embedding transitions"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        job = bar.add_task("embed", total=pending.num_rows)
        for start in range(0, pending.num_rows, EMBED_CHUNK):
            chunk = pending.slice(start, EMBED_CHUNK).to_pydict()
            vectors = encoder.encode(chunk["instruction"], chunk["state"], chunk["action"],
                                     on_batch=lambda n: bar.advance(job, n / encoder.pieces))
            store.append_table(TABLE, embeddings_table(chunk["content_hash"], encoder.vectors_id,
                                                       vectors))
            bar.update(job, completed=min(start + EMBED_CHUNK, pending.num_rows))


class TransitionEncoder:
    """(instruction, state, action) columns -> unit vectors by `keys`, each distinct text (full,
    full-bf16) or piece (parts) encoded once; encodings are remembered across calls, up to
    CACHE_TEXTS."""

    def __init__(self, embedder: Embedder, keys: str = DEFAULT_KEYS, batch_size: int = 64):
        self.embedder, self.keys, self.batch_size = embedder, keys, batch_size
        self.vectors_id = vectors_id(keys, embedder.embedder_id)
        self.precision = "bfloat16" if keys == "full-bf16" else "float32"
        self.pieces = len(transition_parts("", "", "")) if keys == "parts" else 1  # texts per row
        self._cache: dict[str, tuple[np.ndarray, float]] = {}  # text -> (token sum, count)

    def encode(self, instructions: Sequence[str | None], states: Sequence[str | None],
               actions: Sequence[str | None], on_batch=None) -> np.ndarray:
        """Unit vectors float32 [n, 384]; `on_batch(n)` after each batch of n texts encoded."""
        rows = list(zip(instructions, states, actions))
        if self.keys != "parts":
            sums, counts = self._sums([transition_text(*r) for r in rows], on_batch)
            return unit_rows(sums / np.maximum(counts, 1e-9)[:, None])
        total = np.zeros((len(rows), DIM), np.float32)
        for piece in zip(*(transition_parts(*r) for r in rows)) if rows else ():
            total += self._sums(list(piece), on_batch)[0]  # all pieces' tokens pooled together
        return unit_rows(total)

    def _sums(self, texts: list[str], on_batch=None) -> tuple[np.ndarray, np.ndarray]:
        """Token sums and counts of texts, encoding only the distinct ones not in the cache."""
        index: dict[str, int] = {}
        inverse = np.fromiter((index.setdefault(t, len(index)) for t in texts), np.int64,
                              len(texts))
        found = {t: self._cache[t] for t in index if t in self._cache}
        new = [t for t in index if t not in found]
        if new:
            sums, counts = self.embedder.encode_sums(new, batch_size=self.batch_size,
                                                     on_batch=on_batch, precision=self.precision)
            found.update(zip(new, zip(sums, counts.tolist())))
            if len(self._cache) + len(new) > CACHE_TEXTS:
                self._cache.clear()  # bounded memory: a text seen again later is encoded again
            self._cache.update((t, found[t]) for t in new)
        pairs = [found[t] for t in index]
        sums = np.stack([p[0] for p in pairs]) if pairs else np.empty((0, DIM), np.float32)
        counts = np.array([p[1] for p in pairs], np.float32)
        return sums[inverse], counts[inverse]


def encode_distinct(embedder: Embedder, texts: list[str], batch_size: int = 64,
                    on_batch=None) -> np.ndarray:
    """embedder.encode(texts), encoding each distinct text once (transitions that differ only in
    next state, reward or episode share their key text); the vectors are the same."""
    index: dict[str, int] = {}
    inverse = np.fromiter((index.setdefault(t, len(index)) for t in texts), np.int64, len(texts))
    vectors = embedder.encode(list(index), batch_size=batch_size, on_batch=on_batch)
    return vectors[inverse]


# ------------------------------------------------------------------------------------------
# The index: load, check against the embeddings table, extend or rebuild, save


def _embedded_segments(store, embedder_id: str):
    """(segment file, row mask for embedder_id, content hashes of those rows) oldest first."""
    for path in store.segments(TABLE) if TABLE in store.tables() else []:
        cols = pq.read_table(path, columns=["content_hash", "embedder"])
        mask = np.asarray(cols.column("embedder").to_numpy(zero_copy_only=False) == embedder_id)
        hashes = np.asarray(cols.column("content_hash").to_pylist(), dtype="S")[mask]
        yield path, mask, hashes


def _vectors_of(path: Path, mask: np.ndarray, skip: int) -> np.ndarray:
    column = pq.read_table(path, columns=["vector"]).column("vector").combine_chunks()
    flat = column.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(-1, DIM)[mask][skip:]


def sync_index(store, embedder_id: str, progress: bool = False) -> tuple[VectorIndex, np.ndarray]:
    """The index over all embeddings of embedder_id, extended (or rebuilt) and saved as needed."""
    key = _key(store, embedder_id)
    generation = store.catalog()["generation"]
    cached = _LOADED.get(key)
    if cached is not None and cached[0] == generation:
        return cached[1], cached[2]
    directory = index_dir(store, embedder_id)
    index, keys = cached[1:] if cached is not None else _load(directory, embedder_id)
    segments = list(_embedded_segments(store, embedder_id))
    all_keys = (np.concatenate([h for _, _, h in segments]) if segments
                else np.empty(0, dtype="S32"))
    if len(keys) > len(all_keys) or not np.array_equal(all_keys[:len(keys)], keys):
        index, keys = VectorIndex(DIM, embedder=embedder_id), np.empty(0, dtype="S32")  # rebuild
    if len(all_keys) > len(keys):
        _extend(index, segments, len(keys), progress)
        keys = all_keys
        with store.lock():
            _save(directory, index, keys)
    _LOADED[key] = (generation, index, keys)
    return index, keys


def _extend(index: VectorIndex, segments, have: int, progress: bool) -> None:
    seen = 0
    for path, mask, hashes in segments:
        if seen + len(hashes) > have:
            skip = max(0, have - seen)
            vectors = _vectors_of(path, mask, skip)
            index.add(np.arange(seen + skip, seen + len(hashes), dtype=np.int64), vectors)
        seen += len(hashes)
    if progress and index.approximate:
        print(f"index: {len(index):,} vectors (HNSW)", file=sys.stderr)


def _load(directory: Path, embedder_id: str) -> tuple[VectorIndex, np.ndarray]:
    try:
        index = VectorIndex.load(directory, embedder=embedder_id, dim=DIM)
        keys = np.load(directory / "keys.npy", allow_pickle=False)
        if len(keys) != len(index):
            raise IndexMismatch("keys and index disagree")
        return index, keys
    except (IndexMismatch, OSError, ValueError):
        return VectorIndex(DIM, embedder=embedder_id), np.empty(0, dtype="S32")


def _save(directory: Path, index: VectorIndex, keys: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "keys.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, keys, allow_pickle=False)
    index.save(directory)  # header last: load() checks the counts of both


# ------------------------------------------------------------------------------------------
# Retrieval


def query_vectors(queries, keys: str = DEFAULT_KEYS) -> np.ndarray:
    """[n, 384] float32 from query dicts (embedded by `keys`) or precomputed vectors."""
    if not isinstance(queries, np.ndarray):
        queries = list(queries)
        if queries and all(isinstance(q, dict) for q in queries):
            rows = [[_query_field(q, i, f) for f in QUERY_FIELDS] for i, q in enumerate(queries)]
            return TransitionEncoder(get_embedder(), keys).encode(*zip(*rows))
    try:
        vectors = np.asarray(queries, dtype=np.float32).reshape(-1 if len(queries) else 0, DIM)
    except (TypeError, ValueError):
        raise InputError(f"expected query dicts with {', '.join(QUERY_FIELDS)} or vectors of "
                         f"dim {DIM}", field="queries") from None
    if not np.isfinite(vectors).all():
        raise InputError("query vectors must be finite", field="queries")
    return vectors


def _query_field(query: dict, i: int, name: str) -> str:
    value = query.get(name)
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}",
                         field=f"queries[{i}].{name}")
    return value


def retrieve(store, queries, k: int = 5, env: str | None = None,
             exclude_episodes: Sequence[str] | None = None,
             progress: bool = False, keys: str = DEFAULT_KEYS) -> list[list[dict[str, Any]]]:
    """Per query, the k most similar stored transitions (step fields + score), best first."""
    embedder_id = vectors_id(keys)
    if store.catalog()["generation"] != _LOADED.get(_key(store, embedder_id), (None,))[0]:
        embed_pending(store, progress=progress, keys=keys)  # a fresh or grown store just works
    index, index_keys = sync_index(store, embedder_id)
    vectors = query_vectors(queries, keys)
    if len(vectors) == 0 or k <= 0 or len(index) == 0:
        return [[] for _ in range(len(vectors))]
    excluded = sorted(set(exclude_episodes or ()))
    fetch = min(len(index), k if env is None and not excluded else 4 * k + len(excluded))
    while True:
        ids, scores = index.search(vectors, fetch)
        results = _resolve(store, index_keys, ids, scores, k, env, excluded)
        if fetch >= len(index) or all(len(r) == k for r in results):
            return results
        fetch = min(len(index), fetch * 4)  # filters removed too many: widen the net


def _key(store, embedder_id: str) -> tuple[str, str]:
    return (str(Path(store.path).resolve()), embedder_id)


def _resolve(store, keys: np.ndarray, ids: np.ndarray, scores: np.ndarray, k: int,
             env: str | None, excluded: list[str]) -> list[list[dict[str, Any]]]:
    """Candidate ids → the first k whose content has a step passing the filters, as dicts."""
    hits = np.unique(keys[ids[ids >= 0]])
    rows = _step_rows(store, [h.decode() for h in hits], env, excluded)
    results = []
    for id_row, score_row in zip(ids, scores):
        found = []
        for i, score in zip(id_row, score_row):
            row = rows.get(keys[i].decode()) if i >= 0 else None
            if row is not None:
                found.append({**row, "score": float(score)})
                if len(found) == k:
                    break
        results.append(found)
    return results


def _step_rows(store, hashes: list[str], env: str | None,
               excluded: list[str]) -> dict[str, dict[str, Any]]:
    """content_hash -> the first step (by episode_id, t) with that content passing the filters."""
    con = _connection(store)
    con.register("hits", pa.table({"content_hash": pa.array(hashes, pa.string())}))
    con.register("excluded", pa.table({"episode_id": pa.array(excluded, pa.string())}))
    env_cond = "AND s.env = $env" if env is not None else ""
    table = con.sql(
        f"SELECT {', '.join('s.' + f for f in STEP_FIELDS)} FROM steps s "
        "SEMI JOIN hits h ON s.content_hash = h.content_hash "
        f"ANTI JOIN excluded x ON s.episode_id = x.episode_id WHERE true {env_cond} "
        "ORDER BY s.episode_id, s.t",
        params={"env": env} if env is not None else None).to_arrow_table()
    rows: dict[str, dict[str, Any]] = {}
    for row in table.to_pylist():
        rows.setdefault(row["content_hash"], row)
    return rows


# store path -> (catalog generation, read-only DuckDB connection): opening one costs ~50-80 ms,
# more than the search itself; segments are immutable, so it is valid until the catalog changes.
_CONNECTIONS: dict[str, tuple[int, Any]] = {}


def _connection(store):
    key = str(Path(store.path).resolve())
    generation = store.catalog()["generation"]
    cached = _CONNECTIONS.get(key)
    if cached is not None and cached[0] == generation:
        return cached[1]
    if cached is not None:
        cached[1].close()
    con = store.connect(read_only=True)
    _CONNECTIONS[key] = (generation, con)
    return con
