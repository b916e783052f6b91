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
