"""VectorIndex: exact search below the threshold, HNSW (usearch) above it; files round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dreamgym_cli.store.index import IndexMismatch, VectorIndex, exact_search

DIM = 32


def clustered(n: int, seed: int, clusters: int = 40) -> np.ndarray:
    """Unit vectors around `clusters` random centres (what embeddings of similar texts look like)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((clusters, DIM))
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


def test_exact_search_matches_a_full_sort():
    data, queries = clustered(5000, 1), clustered(37, 2)
    rows, scores = exact_search(data, queries, 10, budget=37 * 1100)  # several chunks
    sims = queries @ data.T
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, expected, axis=1), rtol=1e-6)


def test_fewer_vectors_than_k_pads_with_minus_one():
    index = VectorIndex(DIM)
    index.add([7, 3], clustered(2, 1))
    ids, scores = index.search(clustered(3, 2), 5)
    assert ids.shape == (3, 5) and set(ids[:, :2].ravel()) == {3, 7}
    assert (ids[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()
    empty_ids, _ = VectorIndex(DIM).search(clustered(2, 2), 3)
    assert (empty_ids == -1).all()


def test_approximate_index_recall_at_10_against_exact():
    data, queries = clustered(4000, 1), clustered(200, 2)
    index = VectorIndex(DIM, exact_below=1000)
    index.add(np.arange(len(data)), data)
    assert index.approximate
    ids, scores = index.search(queries, 10)
    truth, truth_scores = exact_search(data, queries, 10)
    assert recall(ids, truth) >= 0.9
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    # HNSW is approximate (and its parallel build is not deterministic): the best hit is the exact
    # best for almost every query, and never scores above it
    same_top = np.abs(scores[:, 0] - truth_scores[:, 0]) <= 1e-3
    assert same_top.mean() >= 0.95, same_top.mean()
    assert (scores[:, 0] <= truth_scores[:, 0] + 1e-3).all()


def test_growing_past_the_threshold_switches_to_hnsw_and_keeps_every_vector():
    data = clustered(3000, 3)
    index = VectorIndex(DIM, exact_below=1000)
    for start in range(0, 3000, 700):  # crosses the threshold inside one add
        index.add(np.arange(start, min(start + 700, 3000)) + 10, data[start:start + 700])
    assert index.approximate and len(index) == 3000
    ids, scores = index.search(data[::50], 1)  # each stored vector finds itself
    np.testing.assert_array_equal(ids[:, 0], np.arange(0, 3000, 50) + 10)
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)


@pytest.mark.parametrize("exact_below", [10_000, 500])
def test_incremental_add_equals_building_at_once(exact_below):
    data, queries = clustered(2000, 4), clustered(100, 5)
    at_once = VectorIndex(DIM, exact_below=exact_below)
    at_once.add(np.arange(2000), data)
    growing = VectorIndex(DIM, exact_below=exact_below)
    for start in range(0, 2000, 300):
        growing.add(np.arange(start, min(start + 300, 2000)), data[start:start + 300])
    a, _ = at_once.search(queries, 10)
    b, _ = growing.search(queries, 10)
    if not at_once.approximate:
        np.testing.assert_array_equal(a, b)
    else:  # graphs built in another order differ a little; both must find the true neighbours
        truth, _ = exact_search(data, queries, 10)
        assert recall(a, truth) >= 0.9 and recall(b, truth) >= 0.9
        assert recall(a, b) >= 0.9


@pytest.mark.parametrize("exact_below", [10_000, 500])
def test_save_load_round_trip(tmp_path, exact_below):
    data, queries = clustered(1500, 6), clustered(50, 7)
    index = VectorIndex(DIM, embedder="emb-x", exact_below=exact_below)
    index.add(np.arange(1500) * 3, data)
    index.save(tmp_path / "ix")
    header = json.loads((tmp_path / "ix" / "header.json").read_text())
    assert header["count"] == 1500 and header["dim"] == DIM and header["embedder"] == "emb-x"
    loaded = VectorIndex.load(tmp_path / "ix", embedder="emb-x", dim=DIM)
    assert len(loaded) == 1500 and loaded.approximate == index.approximate
    for got, want in zip(loaded.search(queries, 10), index.search(queries, 10)):
        np.testing.assert_array_equal(got, want)
    loaded.add([99_999], clustered(1, 8))  # a loaded index keeps growing
    assert len(loaded) == 1501
    with pytest.raises(IndexMismatch):
        VectorIndex.load(tmp_path / "ix", embedder="another-embedder")


def test_load_detects_inconsistent_files(tmp_path):
    index = VectorIndex(DIM)
    index.add(np.arange(10), clustered(10, 1))
    index.save(tmp_path)
    header = json.loads((tmp_path / "header.json").read_text())
    (tmp_path / "header.json").write_text(json.dumps(dict(header, count=11)))
    with pytest.raises(IndexMismatch, match="header says 11"):
        VectorIndex.load(tmp_path)
    (tmp_path / "header.json").unlink()
    with pytest.raises(IndexMismatch):
        VectorIndex.load(tmp_path)


def test_bad_ids_and_shapes_are_refused():
    index = VectorIndex(DIM)
    index.add([1, 2], clustered(2, 1))
    with pytest.raises(ValueError):
        index.add([2], clustered(1, 2))  # already present
    with pytest.raises(ValueError):
        index.add([5, 5], clustered(2, 2))  # repeated
    with pytest.raises(ValueError):
        index.add([6], np.ones((1, DIM + 1), np.float32))
    with pytest.raises(ValueError):
        index.search(np.ones((1, DIM - 1), np.float32), 3)
    assert len(index) == 2
