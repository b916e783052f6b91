"""The columnar fast path for canonical JSONL gives exactly what the per-record reader gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamgym_cli import canonical_fast
from dreamgym_cli.schema import rows_to_table
from dreamgym_cli.store import ReplayStore, synthetic
from dreamgym_cli.trajectory_formats import read_canonical

COMPARED = ("episode_id", "t", "task_id", "env", "source", "state", "admissible", "action",
            "next_state", "reward", "done", "success", "reasoning", "policy", "content_hash")
EPISODE_COMPARED = ("episode_id", "task_id", "env", "source", "policy", "return", "success",
                    "length", "content_hash")


def tricky_episodes() -> list[dict]:
    eps = [synthetic.episode_object(i, 4) for i in range(6)]
    eps[0]["steps"][0]["state"] = 'quote " backslash \\ newline \n tab \t cr \r unicode é 漢 🙂'
    eps[0]["steps"][1]["action"] = "ctrl \x01 and \x1f and \b \f"
    eps[1]["steps"][0]["admissible"] = ['say "hi"', "a\\b", "", "é"]
    eps[1]["steps"][1]["admissible"] = []
    eps[1]["steps"][2]["admissible"] = None
    eps[2]["steps"][3]["reward"] = 0.1
    eps[2]["steps"][2]["reward"] = 1e-7
    eps[3]["steps"][1]["reward"] = None  # unknown reward: return unknown
    eps[3]["steps"][0]["success"] = None
    eps[4]["steps"][2]["reasoning"] = "because"
    eps[4]["return"] = 5.0
    eps[4]["success"] = True
    eps[5]["source"] = None  # filled by --source
    eps[5]["task"]["spec"] = {"game": "g/x.z8", "nested": {"a": [1, 2]}}
    return eps


@pytest.mark.parametrize("with_control_chars", [True, False])
def test_fast_path_equals_per_record_reader(tmp_path, with_control_chars):
    eps = tricky_episodes()
    if not with_control_chars:
        eps[0]["steps"][1]["action"] = "plain"
    path = tmp_path / "E.jsonl"
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in eps))
    fast = canonical_fast.read(path, env=None, source="synthetic")
    assert fast is not None
    slow = list(read_canonical(path, env=None, source="synthetic"))
    assert all(r.error is None for r in slow)
    steps = rows_to_table("steps", [s for r in slow for s in r.steps])
    episodes = rows_to_table("episodes", [r.episode for r in slow])
    assert fast["steps"].select(COMPARED).to_pylist() == steps.select(COMPARED).to_pylist()
    assert fast["episodes"].select(EPISODE_COMPARED).to_pylist() == \
        episodes.select(EPISODE_COMPARED).to_pylist()
    assert [row for _, row in fast["tasks"]] == list({r.task["task_id"]: r.task
                                                      for r in slow}.values())


@pytest.mark.parametrize("change", [
    lambda e: e["steps"][1].update(reward="high"),
    lambda e: e["steps"][2].pop("action"),
    lambda e: e["steps"][1].update(t=5),
    lambda e: e.update(episode_id=""),
    lambda e: e["task"].update(spec={"game": "../../x"}),
    lambda e: e.update(length=9),
    lambda e: e["steps"][0].update(metadata={"k": 1}),
])
def test_fast_path_declines_what_it_cannot_vouch_for(tmp_path, change):
    eps = [synthetic.episode_object(i, 3) for i in range(3)]
    change(eps[1])
    path = tmp_path / "E.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in eps))
    assert canonical_fast.read(path, env=None, source=None) is None


def test_fast_ingest_then_reingest_per_record_is_duplicate(tmp_path, run_cli):
    """Content hashes agree across paths: the same episodes from a HF parquet are duplicates."""
    import datasets

    path = tmp_path / "E.jsonl"
    synthetic.write_jsonl(path, 30, 5)
    code, out, err = run_cli("ingest", path, "--store", tmp_path / "S", "--batch-steps", "40",
                             "--json")
    assert code == 0, err and json.loads(out)["totals"]["steps_added"] == 150
    store = ReplayStore.open(tmp_path / "S")
    assert len(store.segments("steps")) == 4  # batches of whole episodes, <= 40 transitions
    nested = [synthetic.episode_object(i, 5) for i in range(30)]
    for ep in nested:
        ep["task"]["spec"] = json.dumps(ep["task"]["spec"])
    datasets.Dataset.from_list(nested).to_parquet(str(tmp_path / "eps.parquet"))
    code, out, _ = run_cli("ingest", tmp_path / "eps.parquet", "--store", tmp_path / "S",
                           "--json")
    assert code == 0 and json.loads(out)["totals"]["episodes_duplicate"] == 30


def test_bad_line_still_named_exactly(tmp_path, run_cli):
    eps = [synthetic.episode_object(i, 3) for i in range(3)]
    eps[2]["steps"][1]["done"] = "yes"
    path = tmp_path / "E.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in eps))
    code, _, err = run_cli("ingest", path, "--store", tmp_path / "S")
    assert code == 2 and f"{path}:3" in err and "field 'steps[1].done'" in err
    assert not Path(tmp_path / "S").exists()


def test_encode_distinct_gives_the_same_vectors():
    import numpy as np

    from dreamgym_cli.store.embed import get_embedder
    from dreamgym_cli.store.retrieval import encode_distinct

    texts = ["task: a\naction: go north\nstate: hall", "task: b\naction: look\nstate: attic",
             "task: a\naction: go north\nstate: hall"]
    embedder = get_embedder()
    assert np.allclose(encode_distinct(embedder, texts), embedder.encode(texts), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Streaming: the file is read and converted a block at a time


def _per_record(path: Path, source: str | None = None) -> tuple[list, list, list]:
    slow = list(read_canonical(path, env=None, source=source))
    assert all(r.error is None for r in slow)
    steps = rows_to_table("steps", [s for r in slow for s in r.steps])
    episodes = rows_to_table("episodes", [r.episode for r in slow])
    tasks = list({r.task["task_id"]: r.task for r in slow}.values())
    return (steps.select(COMPARED).to_pylist(), episodes.select(EPISODE_COMPARED).to_pylist(),
            tasks)


def _fast(path: Path, source: str | None = None) -> tuple[list, list, list]:
    fast = canonical_fast.read(path, env=None, source=source)
    assert fast is not None
    return (fast["steps"].select(COMPARED).to_pylist(),
            fast["episodes"].select(EPISODE_COMPARED).to_pylist(),
            [row for _, row in fast["tasks"]])


def test_blocks_of_a_file_agree_with_the_per_record_reader(tmp_path, monkeypatch):
    """Many small blocks: tasks first seen in a later block, escapes in ids and policies (the
    episode hash text), nested specs and lists inside specs."""
    monkeypatch.setattr(canonical_fast, "BLOCK_BYTES", 4096)
    eps = tricky_episodes() + [synthetic.episode_object(i, 3) for i in range(6, 50)]
    eps[7]["policy"] = 'pol "q" \\ é'
    eps[8]["task"]["task_id"] = 'task "with" \\ quotes'
    eps[9]["task"]["spec"] = {"seed": 3, "tags": ["a", "b"]}
    eps[10]["task"]["spec"] = {"seed": None}
    eps[11]["task"] = dict(eps[12]["task"])  # the same task in two lines
    eps[45]["task"] = {"task_id": "late-task", "env": "synthetic", "instruction": "late"}
    path = tmp_path / "E.jsonl"
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in eps))
    assert path.stat().st_size > 8 * 4096
    blocks = list(canonical_fast.read_batches(path, env=None, source="synthetic"))
    assert len(blocks) > 1 and sum(b.episodes.num_rows for b in blocks) == len(eps)
    assert _fast(path, "synthetic") == _per_record(path, "synthetic")


def test_a_field_first_seen_in_a_later_block_still_takes_the_fast_path(tmp_path, monkeypatch):
    monkeypatch.setattr(canonical_fast, "BLOCK_BYTES", 4096)
    eps = [synthetic.episode_object(i, 3) for i in range(40)]
    eps[35]["steps"][1]["reasoning"] = "first reasoning, in a later block"
    eps[36]["task"]["spec"] = {"seed": 1, "game": "games/x.z8"}
    path = tmp_path / "E.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in eps))
    assert _fast(path) == _per_record(path)


def test_an_episode_id_repeated_in_a_later_block_is_declined(tmp_path, monkeypatch, run_cli):
    monkeypatch.setattr(canonical_fast, "BLOCK_BYTES", 4096)
    eps = [synthetic.episode_object(i, 3) for i in range(40)]
    eps[38]["episode_id"] = eps[1]["episode_id"]
    path = tmp_path / "E.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in eps))
    assert canonical_fast.read(path, env=None, source=None) is None
    code, _, err = run_cli("ingest", path, "--store", tmp_path / "S")
    assert code == 2 and f"{path}:39" in err and "duplicate episode_id" in err


def test_a_null_spec_is_an_empty_spec_on_both_paths(tmp_path):
    """`"spec": null` means no spec, like any optional field set to null: both readers store
    the task with spec {} (the per-record reader used to refuse what the fast path stored)."""
    eps = [synthetic.episode_object(i, 3) for i in range(3)]
    eps[1]["task"]["spec"] = None
    path = tmp_path / "E.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in eps))
    fast, slow = _fast(path), _per_record(path)
    assert fast == slow
    assert [t["spec"] for t in slow[2] if t["task_id"] == eps[1]["task"]["task_id"]] == ["{}"]


def test_a_null_in_admissible_is_declined(tmp_path):
    eps = [synthetic.episode_object(i, 3) for i in range(3)]
    eps[1]["steps"][0]["admissible"] = ["look", None]
    path = tmp_path / "E.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in eps))
    assert canonical_fast.read(path, env=None, source=None) is None


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_bad_record_after_spooled_blocks(tmp_path, monkeypatch, run_cli, on_error):
    """Blocks already spooled when a later one is declined are dropped: the default leaves the
    store untouched; skip stores every good record once and lists the bad one."""
    from test_store import snapshot

    monkeypatch.setattr(canonical_fast, "BLOCK_BYTES", 4096)
    store = tmp_path / "S"
    synthetic.write_jsonl(tmp_path / "first.jsonl", 5, 3, start=1000, prefix="old")
    assert run_cli("ingest", tmp_path / "first.jsonl", "--store", store)[0] == 0
    before = snapshot(store)
    eps = [synthetic.episode_object(i, 3) for i in range(60)]
    eps[55]["steps"][2]["done"] = "yes"
    path = tmp_path / "E.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in eps))
    code, out, err = run_cli("ingest", path, "--store", store, "--batch-steps", "20",
                             "--on-error", on_error, "--json")
    if on_error == "fail":
        assert code == 2 and f"{path}:56" in err and "field 'steps[2].done'" in err
        assert snapshot(store) == before
        return
    assert code == 0, err
    totals = json.loads(out)["totals"]
    assert totals["rejected"] == 1 and totals["episodes_added"] == 59
    assert totals["episodes_duplicate"] == 0  # nothing was spooled twice
    steps = ReplayStore.open(store).sql("SELECT count(*) AS n, count(DISTINCT content_hash) AS "
                                        "h FROM steps WHERE episode_id LIKE 'ep-%'").to_pylist()
    assert steps == [{"n": 59 * 3, "h": 59 * 3}]
