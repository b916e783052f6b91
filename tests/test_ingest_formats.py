"""Ingest of AgentGym conversations and Hugging Face datasets (save_to_disk, parquet, json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamgym_cli.store import ReplayStore, synthetic

SYSTEM = "You are web shopping.\nI will give you instructions about what to do."
FIRST = "WebShop [SEP] Instruction: [SEP] i need a blue shirt under 30 dollars [SEP] Search"
RESULTS = "Instruction: [SEP] i need a blue shirt [SEP] Back to Search [SEP] B0001 [SEP] Blue Shirt"
ITEM = "Instruction: [SEP] i need a blue shirt [SEP] Blue Shirt [SEP] Price: $20 [SEP] Buy Now"


def agentgym_item(item_id: str = "webshop_6", **extra) -> dict:
    """The shape of AgentTraj-L items: system prompt, 'Ok.' (loss false), then task turns."""
    return {"item_id": item_id, **extra, "conversations": [
        {"from": "human", "loss": None, "value": SYSTEM},
        {"from": "gpt", "loss": False, "value": "Ok."},
        {"from": "human", "loss": None, "value": FIRST},
        {"from": "gpt", "loss": True,
         "value": "Thought:\nI will search.\n\nAction:\nsearch[blue shirt]"},
        {"from": "human", "loss": None, "value": RESULTS},
        {"from": "gpt", "loss": True, "value": "Thought:\nThe first one.\n\nAction:\nclick[b0001]"},
        {"from": "human", "loss": None, "value": ITEM},
        {"from": "gpt", "loss": True, "value": "Thought:\nBuy it.\n\nAction:\nclick[buy now]"},
    ]}


def steps_of(store: Path, episode_like: str) -> list[dict]:
    table = ReplayStore.open(store).sql(
        f"SELECT * FROM steps WHERE episode_id LIKE '{episode_like}' ORDER BY episode_id, t")
    return table.to_pylist()


def test_agentgym_json_list(tmp_path, run_cli):
    path = tmp_path / "webshop_train.json"
    empty = {"item_id": "webshop_9", "conversations": []}
    path.write_text(json.dumps([agentgym_item(), agentgym_item("webshop_7"), empty], indent=2))
    code, out, err = run_cli("ingest", path, "--store", tmp_path / "S", "--json")
    assert code == 0, err
    report = json.loads(out)["files"][0]
    assert report["format"] == "agentgym" and report["episodes_added"] == 2
    assert report["rejected"] == 1 and "webshop_9" in report["rejected_reasons"][0]
    steps = steps_of(tmp_path / "S", "webshop_6-%")
    assert [s["action"] for s in steps] == ["search[blue shirt]", "click[b0001]", "click[buy now]"]
    assert [s["state"] for s in steps] == [FIRST, RESULTS, ITEM]
    assert [s["next_state"] for s in steps] == [RESULTS, ITEM, ""]
    assert [s["done"] for s in steps] == [False, False, True]
    assert all(s["reward"] is None and s["success"] is None for s in steps)  # unknown, not 0
    assert {s["env"] for s in steps} == {"webshop"} and steps[0]["task_id"] == "webshop_6"
    [task] = [t for t in ReplayStore.open(tmp_path / "S").tasks() if t.task_id == "webshop_6"]
    assert task.instruction == FIRST and task.spec == {"item_id": "webshop_6", "data_idx": 6}
    info = ReplayStore.open(tmp_path / "S").info()
    assert info["steps"]["reward_unknown"] == 6 and info["episodes"]["success_unknown"] == 2


def test_agentgym_jsonl_with_reward_env_override_and_dedup(tmp_path, run_cli):
    path = tmp_path / "inference.jsonl"
    items = [agentgym_item("webshop_1", reward=1.0, success=1),
             agentgym_item("webshop_2", reward=0.5, success=0)]
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    code, _, err = run_cli("ingest", path, "--store", tmp_path / "S", "--env", "shop",
                           "--source", "synthetic")
    assert code == 0, err
    store = ReplayStore.open(tmp_path / "S")
    episodes = {e["task_id"]: e for e in store.read_table("episodes").to_pylist()}
    assert episodes["webshop_1"]["return"] == 1.0 and episodes["webshop_1"]["success"] is True
    assert episodes["webshop_2"]["return"] == 0.5 and episodes["webshop_2"]["success"] is False
    assert {e["env"] for e in episodes.values()} == {"shop"}
    assert {e["source"] for e in episodes.values()} == {"synthetic"}
    last = steps_of(tmp_path / "S", "webshop_1-%")[-1]
    assert last["reward"] == 1.0 and last["success"] is True
    code, out, _ = run_cli("ingest", path, "--store", tmp_path / "S", "--env", "shop",
                           "--source", "synthetic", "--json")
    assert code == 0 and json.loads(out)["totals"]["episodes_duplicate"] == 2


def test_agentgym_item_without_env_prefix_needs_env(tmp_path, run_cli):
    path = tmp_path / "x.json"
    path.write_text(json.dumps([agentgym_item("mystery")]))
    code, _, err = run_cli("ingest", path, "--store", tmp_path / "S")
    assert code == 2 and f"{path}:1" in err and "field 'item_id'" in err and "--env" in err
    assert not (tmp_path / "S").exists()


def _flat_step_rows(n_episodes: int = 3, steps: int = 4) -> list[dict]:
    rows = []
    for i in range(n_episodes):
        obj = synthetic.episode_object(i, steps)
        for s in reversed(obj["steps"]):  # out of order on purpose: the reader orders by t
            rows.append({"episode_id": obj["episode_id"], "task_id": obj["task"]["task_id"],
                         "env": "synthetic", "instruction": obj["task"]["instruction"],
                         "source": "real", "policy": "expert", **s})
    return rows


def test_hf_save_to_disk_flat_steps_with_splits(tmp_path, run_cli):
    import datasets

    rows = _flat_step_rows()
    dd = datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
    dd.save_to_disk(str(tmp_path / "hf"))
    code, out, err = run_cli("ingest", tmp_path / "hf", "--store", tmp_path / "S", "--json")
    assert code == 0, err
    assert json.loads(out)["files"][0]["format"] == "hf"
    store = ReplayStore.open(tmp_path / "S")
    info = store.info()
    assert info["episodes"]["total"] == 3 and info["steps"]["total"] == 12
    assert info["tasks"]["by_split"] == {"test": 3}
    for _, episode, steps in store.iter_episodes():
        assert [s["t"] for s in steps] == [0, 1, 2, 3] and steps[-1]["done"]


def test_hf_parquet_episodes_and_json_conversations(tmp_path, run_cli):
    import datasets

    nested = [synthetic.episode_object(i, 3) for i in range(4)]
    for ep in nested:  # Arrow needs one type per column
        ep["task"]["spec"] = json.dumps(ep["task"]["spec"])
    datasets.Dataset.from_list(nested).to_parquet(str(tmp_path / "eps.parquet"))
    (tmp_path / "conv.json").write_text(json.dumps([agentgym_item("alfworld_3")]))
    code, out, err = run_cli("ingest", tmp_path / "eps.parquet", tmp_path / "conv.json",
                             "--store", tmp_path / "S", "--format", "hf", "--json")
    assert code == 0, err
    files = json.loads(out)["files"]
    assert [f["episodes_added"] for f in files] == [4, 1]
    assert ReplayStore.open(tmp_path / "S").info()["steps"]["by_env"] == {
        "alfworld": 3, "synthetic": 12}
    # the same episodes as canonical JSONL are recognised as duplicates (same content hashes)
    jsonl = tmp_path / "eps.jsonl"
    synthetic.write_jsonl(jsonl, 4, 3)
    code, out, _ = run_cli("ingest", jsonl, "--store", tmp_path / "S", "--json")
    assert code == 0 and json.loads(out)["totals"]["episodes_duplicate"] == 4


def test_hf_bad_row_names_row_and_field(tmp_path, run_cli):
    import datasets

    rows = _flat_step_rows(2, 3)
    rows[4]["done"] = None  # the 5th row of the file
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    code, _, err = run_cli("ingest", tmp_path / "hf", "--store", tmp_path / "S")
    assert code == 2, err
    assert f"{tmp_path / 'hf'}:5" in err and "field 'done'" in err
    assert not (tmp_path / "S").exists()


@pytest.mark.parametrize("fmt", ["canonical", "agentgym"])
def test_forced_format_mismatch_is_input_error(tmp_path, run_cli, fmt):
    path = tmp_path / ("a.jsonl" if fmt == "agentgym" else "a.json")
    if fmt == "agentgym":
        synthetic.write_jsonl(path, 2, 2)
    else:
        path.write_text(json.dumps([agentgym_item()]))
    code, _, err = run_cli("ingest", path, "--store", tmp_path / "S", "--format", fmt)
    assert code == 2 and str(path) in err and len(err.strip().splitlines()) == 1
