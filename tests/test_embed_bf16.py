"""keys="full-bf16": the full keys' texts through the encoder in bfloat16, stored apart."""

from __future__ import annotations

import numpy as np
import pytest

from dreamgym_cli.errors import InputError
from dreamgym_cli.store import retrieval
from dreamgym_cli.store.embed import default_embedder_id, get_embedder, transition_text, vectors_id
from tests.test_retrieval import as_query, embedded_beside_full, episode

TEXTS = [transition_text(e["task"]["instruction"], s["state"], s["action"])
         for e in (episode(i) for i in range(6)) for s in e["steps"]]


def test_bf16_vectors_match_float32_within_a_tolerance():
    embedder = get_embedder()
    texts = TEXTS + [transition_text("Find the key.", "word " * 400, "open chest")]  # truncated
    full = embedder.encode(texts)
    half = embedder.encode(texts, precision="bfloat16")
    assert half.dtype == np.float32 and half.shape == full.shape
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-5)
    assert (half * full).sum(1).min() > 0.999  # cosine to today's vector
    assert np.abs(half - full).max() < 0.02
    assert not np.array_equal(half, full)  # a different function all the same
    assert embedder.model_in("bfloat16") is embedder.model_in("bfloat16")  # converted once
    assert embedder.model_in("float32") is embedder.model


def test_bf16_neighbours_are_today_s_neighbours():
    embedder = get_embedder()
    full, half = embedder.encode(TEXTS), embedder.encode(TEXTS, precision="bfloat16")
    np.fill_diagonal(sims_full := full @ full.T, -np.inf)
    np.fill_diagonal(sims_half := half @ half.T, -np.inf)
    top_full = np.argsort(-sims_full, axis=1)[:, :3]
    top_half = np.argsort(-sims_half, axis=1)[:, :3]
    # recall@3 with ties: a neighbour as close by today's vectors as today's 3rd counts
    third = np.take_along_axis(sims_full, top_full[:, 2:], 1)
    recall = (np.take_along_axis(sims_full, top_half, 1) >= third - 1e-4).mean()
    assert recall >= 0.95


def test_unknown_precision_and_keys_are_refused():
    embedder = get_embedder()
    with pytest.raises(InputError, match="did you mean 'bfloat16'"):
        embedder.encode(["x"], precision="bfloat")
    assert vectors_id("full-bf16") == default_embedder_id() + "+full-bf16"
    with pytest.raises(InputError, match="did you mean 'full-bf16'"):
        vectors_id("full-bf")


def test_transition_encoder_bf16_encodes_each_distinct_text_once(monkeypatch):
    embedder = get_embedder()
    rows = [as_query(episode(i % 3), t) for i in range(6) for t in range(2)]  # 6 distinct of 12
    cols = [[r[f] for r in rows] for f in ("instruction", "state", "action")]
    texts = [transition_text(*r) for r in zip(*cols)]
    calls: list[tuple[list[str], str]] = []
    encode_sums = embedder.encode_sums
    monkeypatch.setattr(embedder, "encode_sums", lambda t, **kw: calls.append(
        (list(t), kw["precision"])) or encode_sums(t, **kw))
    vectors = retrieval.TransitionEncoder(embedder, "full-bf16").encode(*cols)
    assert [sorted(c[0]) for c in calls] == [sorted(set(texts))]
    assert calls[0][1] == "bfloat16"
    monkeypatch.undo()
    np.testing.assert_allclose(vectors, embedder.encode(texts, precision="bfloat16"), atol=1e-6)


def test_bf16_keys_embed_and_retrieve_beside_full(tmp_path):
    store = embedded_beside_full(tmp_path, "full-bf16")
    query = [as_query(episode(1), 2)]
    top = store.retrieve(query, k=3, keys="full-bf16")[0]
    today = store.retrieve(query, k=3)[0]
    assert (top[0]["episode_id"], top[0]["t"]) == ("textworld-ep1", 2)
    assert top[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [(r["episode_id"], r["t"]) for r in top] == [(r["episode_id"], r["t"]) for r in today]
    assert retrieval.index_dir(store, vectors_id("full-bf16")) != retrieval.index_dir(
        store, vectors_id("full"))
