"""ReplayStore.embed / ReplayStore.retrieve on a real store (TextWorld-like transitions)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import validate_episode
from dreamgym_cli.store import ReplayStore, retrieval
from dreamgym_cli.store.embed import default_embedder_id
from dreamgym_cli.store.index import VectorIndex

ROOMS = ["kitchen", "cellar", "garden", "attic", "study"]
GOALS = ["rusty key", "red apple", "old map", "golden coin"]
ACTIONS = ["open chest", "take {g}", "go north", "eat carrot", "examine table"]


def episode(i: int, env: str = "textworld", steps: int = 4) -> dict:
    goal, room = GOALS[i % len(GOALS)], ROOMS[i % len(ROOMS)]
    states = [f"-= {room.title()} =- You are in the {room} ({i}). You see a chest and a table. "
              f"Inventory: {'nothing' if t == 0 else 'a carrot'}. Step {t}." for t in range(steps + 1)]
    return {
        "schema_version": 1, "episode_id": f"{env}-ep{i}", "source": "real", "policy": "expert",
        "task": {"task_id": f"{env}-task{i}", "env": env, "spec": {"seed": i},
                 "instruction": f"Find the {goal} in the {room} and take it."},
        "steps": [{"t": t, "state": states[t], "admissible": None,
                   "action": ACTIONS[(i + t) % len(ACTIONS)].format(g=goal),
                   "next_state": states[t + 1], "reward": float(t == steps - 1),
                   "done": t == steps - 1, "success": t == steps - 1} for t in range(steps)],
    }


def append(store: ReplayStore, episodes: list[dict]) -> None:
    tasks, eps, steps = [], [], []
    for e in episodes:
        task, ep, st = validate_episode(e)
        tasks.append(task), eps.append(ep), steps.extend(st)
    store.append(tasks, eps, steps)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ReplayStore:
    s = ReplayStore.open(tmp_path_factory.mktemp("retrieval") / "S", create=True)
    append(s, [episode(i) for i in range(12)] + [episode(i, env="other") for i in range(3)])
    return s


def as_query(e: dict, t: int) -> dict:
    step = e["steps"][t]
    return {"instruction": e["task"]["instruction"], "state": step["state"], "action": step["action"]}


def test_fresh_store_retrieves_the_stored_transition_first(store):
    e3, e7 = episode(3), episode(7)
    results = store.retrieve([as_query(e3, 2), as_query(e7, 0)], k=3)  # embeds pending first
    assert [len(r) for r in results] == [3, 3]
    top = results[0][0]
    assert (top["episode_id"], top["t"], top["action"]) == ("textworld-ep3", 2, e3["steps"][2]["action"])
    assert top["score"] == pytest.approx(1.0, abs=1e-4)
    assert set(top) >= {"task_id", "env", "source", "state", "action", "next_state", "reward",
                        "done", "success", "reasoning", "score"}
    assert top["next_state"] == e3["steps"][2]["next_state"] and top["reward"] == 0.0
    assert (results[1][0]["episode_id"], results[1][0]["t"]) == ("textworld-ep7", 0)
    assert all(a["score"] >= b["score"] for r in results for a, b in zip(r, r[1:]))
    assert store.embed(progress=False) == 0  # everything was embedded by retrieve


def test_env_filter_and_episode_exclusion(store):
    query = as_query(episode(1, env="other"), 1)
    unfiltered = store.retrieve([query], k=4)[0]
    assert unfiltered[0]["episode_id"] == "other-ep1"
    only_tw = store.retrieve([query], k=4, env="textworld")[0]
    assert len(only_tw) == 4 and all(r["env"] == "textworld" for r in only_tw)
    others = store.retrieve([query], k=20, env="other")[0]
    assert len(others) == 12 and all(r["env"] == "other" for r in others)  # 3 episodes x 4 steps
    kept = store.retrieve([query], k=5, exclude_episodes=["other-ep1", "textworld-ep1"])[0]
    assert len(kept) == 5
    assert not {r["episode_id"] for r in kept} & {"other-ep1", "textworld-ep1"}


def test_precomputed_vectors_and_bad_queries(store):
    store.embed(progress=False)  # on its own: xdist may run this before the tests that embed
    index, keys = retrieval.sync_index(store, default_embedder_id())
    table = store.read_table("embeddings")
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False)[:2]).astype(np.float32)
    results = store.retrieve(vectors, k=1)
    assert [r[0]["content_hash"] for r in results] == table.column("content_hash").to_pylist()[:2]
    assert store.retrieve([], k=3) == []
    with pytest.raises(InputError, match=r"queries\[0\]\.state"):
        store.retrieve([{"instruction": "x", "action": "look"}], k=1)
    with pytest.raises(InputError, match="queries"):
        store.retrieve(np.ones((1, 7), np.float32), k=1)


def test_embedding_and_index_are_incremental(tmp_path):
    store = ReplayStore.open(tmp_path / "S", create=True)
    append(store, [episode(i) for i in range(3)])
    assert store.embed(progress=False) == 12
    assert store.embed(progress=False) == 0
    append(store, [episode(i) for i in range(3, 5)])
    assert store.embed(progress=False) == 8
    table = store.read_table("embeddings")
    assert table.num_rows == 20 and len(set(table.column("content_hash").to_pylist())) == 20
    assert set(table.column("embedder").to_pylist()) == {default_embedder_id()}
    assert table.schema.field("vector").type.list_size == 384
    directory = retrieval.index_dir(store, default_embedder_id())
    on_disk = VectorIndex.load(directory)
    assert len(on_disk) == 20
    keys = np.load(directory / "keys.npy", allow_pickle=False)
    assert [k.decode() for k in keys] == table.column("content_hash").to_pylist()


def test_missing_or_inconsistent_index_is_rebuilt(tmp_path):
    store = ReplayStore.open(tmp_path / "S", create=True)
    append(store, [episode(i) for i in range(4)])
    store.embed(progress=False)
    directory = retrieval.index_dir(store, default_embedder_id())
    header = json.loads((directory / "header.json").read_text())
    (directory / "header.json").write_text(json.dumps(dict(header, count=3)))
    retrieval._LOADED.clear()  # as a new process would start
    top = store.retrieve([as_query(episode(2), 1)], k=1)[0][0]
    assert (top["episode_id"], top["t"]) == ("textworld-ep2", 1)
    assert json.loads((directory / "header.json").read_text())["count"] == 16
    retrieval._LOADED.clear()
    for f in directory.iterdir():
        f.unlink()
    top = store.retrieve([as_query(episode(0), 3)], k=1)[0][0]
    assert (top["episode_id"], top["t"]) == ("textworld-ep0", 3)
    assert len(VectorIndex.load(directory)) == 16


def test_transition_encoder_full_keys_are_todays_vectors_each_text_once(monkeypatch):
    from dreamgym_cli.store.embed import get_embedder, transition_text

    embedder = get_embedder()
    rows = [as_query(episode(i % 3), t) for i in range(6) for t in range(2)]  # each twice
    cols = [[r[f] for r in rows] for f in ("instruction", "state", "action")]
    texts = [transition_text(*r) for r in zip(*cols)]
    todays = embedder.encode(texts)
    encoded: list[str] = []
    encode_sums = embedder.encode_sums

    def counting(texts, **kw):
        encoded.extend(texts)
        return encode_sums(texts, **kw)

    monkeypatch.setattr(embedder, "encode_sums", counting)
    encoder = retrieval.TransitionEncoder(embedder, "full")
    vectors = encoder.encode(*cols)
    assert sorted(encoded) == sorted(set(texts))  # 6 distinct texts of 12
    np.testing.assert_allclose(vectors, todays, atol=1e-6)
    encoder.encode(*(c[:4] for c in cols))  # a later chunk: texts seen before are not encoded
    assert len(encoded) == 6


def test_transition_encoder_parts_pool_each_piece_once(monkeypatch):
    from dreamgym_cli.store.embed import get_embedder, transition_parts, unit_rows

    embedder = get_embedder()
    rows = [as_query(episode(i), t) for i in range(4) for t in range(3)]
    cols = [[r[f] for r in rows] for f in ("instruction", "state", "action")]
    encoded: list[str] = []
    encode_sums = embedder.encode_sums
    monkeypatch.setattr(embedder, "encode_sums",
                        lambda texts, **kw: encoded.extend(texts) or encode_sums(texts, **kw))
    vectors = retrieval.TransitionEncoder(embedder, "parts").encode(*cols)
    pieces = [transition_parts(*r) for r in zip(*cols)]
    assert sorted(encoded) == sorted({p for row in pieces for p in row})
    monkeypatch.undo()
    expected = unit_rows(np.stack([sum(embedder.encode_sums(list(p))[0]) for p in pieces]))
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def embedded_beside_full(directory, keys: str):
    """A store of 3 episodes embedded with the full keys and with `keys`: each vector set
    under its own id, never mixed, and a second embed with `keys` finds nothing new."""
    from dreamgym_cli.store.embed import vectors_id

    store = ReplayStore.open(directory / "S", create=True)
    append(store, [episode(i) for i in range(3)])
    assert store.embed(progress=False) == 12
    assert store.embed(progress=False, keys=keys) == 12
    assert store.embed(progress=False, keys=keys) == 0
    table = store.read_table("embeddings")
    assert sorted(set(table.column("embedder").to_pylist())) == sorted(
        [vectors_id("full"), vectors_id(keys)])
    return store


def test_parts_keys_embed_and_retrieve_beside_full(tmp_path):
    from dreamgym_cli.store.embed import vectors_id

    store = embedded_beside_full(tmp_path, "parts")
    top = store.retrieve([as_query(episode(1), 2)], k=2, keys="parts")[0]
    assert (top[0]["episode_id"], top[0]["t"]) == ("textworld-ep1", 2)
    assert top[0]["score"] == pytest.approx(1.0, abs=1e-4) and top[1]["score"] < 0.9999
    assert retrieval.index_dir(store, vectors_id("parts")) != retrieval.index_dir(
        store, vectors_id("full"))
