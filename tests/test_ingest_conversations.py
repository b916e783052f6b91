"""The field's conversation formats go in unmodified, with exact field mapping.

Fixtures in tests/data/formats/ are small files written for these tests in each format's shape
(AgentGym/AgentTraj, AgentInstruct, ETO, OpenAI fine-tuning `messages`, ShareGPT); see
docs/formats.md.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dreamgym_cli.conversations import split_react
from dreamgym_cli.store import ReplayStore
from test_store import snapshot

DATA = Path(__file__).parent / "data" / "formats"


def ingest(run_cli, *args) -> dict:
    code, out, err = run_cli("ingest", *map(str, args), "--json")
    assert code == 0, err
    return json.loads(out)


def rows(store: Path, query: str) -> list[dict]:
    return ReplayStore.open(store).sql(query).to_pylist()


def steps(store: Path, task_id: str) -> list[dict]:
    return rows(store, f"SELECT * FROM steps WHERE task_id = '{task_id}' ORDER BY t")


def task(store: Path, task_id: str) -> dict:
    [row] = rows(store, f"SELECT * FROM tasks WHERE task_id = '{task_id}'")
    return row


@pytest.mark.parametrize("text, reasoning, action", [
    ("Thought: look first.\nAction: search[red mug]", "look first.", "search[red mug]"),
    ("THOUGHT: go on.\n ACTION: go to countertop 1", "go on.", "go to countertop 1"),
    ("Think: count.\n\nAct: bash\n\n```bash\nls\n```", "count.", "bash\n\n```bash\nls\n```"),
    ("thought: lower.\naction: click[x]", "lower.", "click[x]"),
    ("Thought 2: numbered.\nAction 2: finish[1969]", "numbered.", "finish[1969]"),
    ("Thought:\nMulti\nline.\n\nAction:\nclick[buy now]", "Multi\nline.", "click[buy now]"),
    ("<think>tagged</think><action>open door</action>", "tagged", "open door"),
    ("Action: Operation\n```sql\nSELECT 1;\n```", None, "Operation\n```sql\nSELECT 1;\n```"),
    ("go north", None, "go north"),
    ("I will act: carefully. Action: take key", "I will act: carefully.", "take key"),
])
def test_split_react(text, reasoning, action):
    assert split_react(text) == (reasoning, action)


def test_agentgym_traj(tmp_path, run_cli):
    report = ingest(run_cli, DATA / "agentgym_webshop.jsonl", "--store", tmp_path / "S")
    assert report["files"][0]["format"] == "agentgym"
    got = steps(tmp_path / "S", "webshop_41")
    assert [s["action"] for s in got] == ["search[red mug]", "click[m0042]", "click[buy now]"]
    assert [s["reasoning"] for s in got] == ["Search for the mug first.", "M0042 fits the budget.",
                                            "Buy it."]
    assert got[0]["state"].startswith("WebShop [SEP] Instruction: [SEP] red mug")
    assert [s["reward"] for s in got] == [None, None, 1.0]
    assert [s["success"] for s in got] == [False, False, True]
    assert json.loads(got[0]["metadata"]) == {
        "format": "agentgym", "file": "agentgym_webshop.jsonl", "line": 1,
        "record": {"item_id": "webshop_41"}}
    assert steps(tmp_path / "S", "webshop_42")[0]["success"] is None  # no outcome: unknown


def test_agentinstruct_alfworld_upper_case_and_one_shot_example(tmp_path, run_cli):
    report = ingest(run_cli, DATA / "agentinstruct_alfworld.json", "--store", tmp_path / "S")
    assert report["files"][0]["format"] == "agentinstruct"
    got = steps(tmp_path / "S", "alfworld_7")
    # the example episode (book on table) and the "OK" are loss: false, so not steps
    assert [s["action"] for s in got] == ["go to fridge 1", "open fridge 1", "go to countertop 1"]
    assert [s["reasoning"] for s in got] == [
        "Apples are often in the fridge. I will open it.", "Open the fridge.",
        "It is already cool; carry it over."]
    assert got[0]["state"].startswith("Here is your task. You are in the middle of a room. You "
                                      "see a countertop 1")
    assert [s["next_state"] for s in got] == [
        "The fridge 1 is closed.", "You open the fridge 1. In it, you see an apple 1.", ""]
    assert [s["done"] for s in got] == [False, False, True]
    row = task(tmp_path / "S", "alfworld_7")
    assert row["env"] == "alfworld" and row["instruction"] == "put a cool apple in countertop."
    assert json.loads(row["spec"]) == {"id": "alfworld_7", "data_idx": 7}


def test_agentinstruct_os_role_content_without_loss(tmp_path, run_cli):
    """No loss marks: the acknowledgement and the one-shot problem are recognised as prompt."""
    ingest(run_cli, DATA / "agentinstruct_os.jsonl", "--store", tmp_path / "S")
    got = steps(tmp_path / "S", "os_3")
    assert [s["action"] for s in got] == [
        "bash\n\n```bash\nstat -c %s /var/log/app.log\n```", "answer(2048)"]
    assert [s["reasoning"] for s in got] == ["stat prints the size.", "The file has 2048 bytes."]
    assert got[0]["state"].startswith("Now, I will start a new problem in a new OS.")
    assert got[0]["next_state"] == "The output of the OS:\n\n2048" == got[1]["state"]
    assert task(tmp_path / "S", "os_3")["instruction"] == \
        "What is the size in bytes of /var/log/app.log?"


def test_eto_free_text_source_reward_and_observation_labels(tmp_path, run_cli):
    path = DATA / "eto_webshop.json"
    code, _, err = run_cli("ingest", path, "--store", tmp_path / "S")
    assert code == 2 and f"{path}:2" in err and "field 'id'" in err and "--env" in err
    report = ingest(run_cli, path, "--store", tmp_path / "S", "--env", "webshop")
    assert report["files"][0]["format"] == "eto" and report["totals"]["steps_added"] == 3
    got = steps(tmp_path / "S", "webshop_17")
    assert [s["state"] for s in got] == [  # "Observation:\n" removed alike at every t
        "WebShop [SEP] Instruction: [SEP] wool socks in size large [SEP] Search",
        "Instruction: [SEP] wool socks [SEP] Back to Search [SEP] S0777 [SEP] Wool Socks [SEP] "
        "$12.00",
        "Instruction: [SEP] wool socks [SEP] size [SEP] medium [SEP] Buy Now"]
    assert [s["action"] for s in got] == ["search[wool socks large]", "click[s0777]",
                                          "click[buy now]"]
    assert [s["reward"] for s in got] == [None, None, 0.75] and got[-1]["success"] is False
    [episode] = rows(tmp_path / "S", "SELECT * FROM episodes")
    assert episode["source"] == "real" and episode["return"] == 0.75
    meta = json.loads(got[0]["metadata"])
    assert meta["format"] == "eto" and meta["record"] == {"id": 17, "source": "human",
                                                          "split": "train"}
    ingest(run_cli, path, "--store", tmp_path / "S2", "--env", "webshop", "--source", "synthetic")
    assert {r["source"] for r in rows(tmp_path / "S2", "SELECT source FROM steps")} == {
        "synthetic"}


def test_openai_messages(tmp_path, run_cli):
    path = DATA / "openai_messages.jsonl"
    report = ingest(run_cli, path, "--store", tmp_path / "S", "--env", "hotpotqa")
    assert report["files"][0]["format"] == "openai" and report["totals"]["episodes_added"] == 2
    by_instruction = {t["instruction"]: t["task_id"] for t in rows(tmp_path / "S",
                                                                   "SELECT * FROM tasks")}
    # the system message is not the task; the first user message is
    assert set(by_instruction) == {"Which river flows through the capital of Hungary?",
                                   "Question: What year did the first person walk on the moon?"}
    first = steps(tmp_path / "S", by_instruction["Which river flows through the capital of "
                                                 "Hungary?"])
    assert [s["action"] for s in first] == ["search[Budapest river]", "finish[Danube]"]
    assert first[0]["next_state"] == "Budapest lies on both banks of the Danube."
    assert first[-1]["reward"] == 1.0 and first[-1]["success"] is True  # "reward = True" line
    second = steps(tmp_path / "S", by_instruction["Question: What year did the first person "
                                                  "walk on the moon?"])
    assert [s["action"] for s in second] == ["search[first moon walk year]", "finish[1969]"]
    assert [s["reasoning"] for s in second] == ["Search the moon landing.", "1969."]
    assert second[-1]["reward"] == 1.0 and second[-1]["success"] is True


def test_sharegpt_system_turn_and_unknown_keys(tmp_path, run_cli):
    report = ingest(run_cli, DATA / "sharegpt_adventure.json", "--store", tmp_path / "S",
                    "--env", "adventure")
    assert report["files"][0]["format"] == "sharegpt"
    got = steps(tmp_path / "S", "adventure_chat-0001")
    assert [(s["state"], s["action"]) for s in got] == [
        ("You are in a cellar. A ladder leads up. Goal: reach the attic.", "climb ladder"),
        ("You are in the hall. Stairs lead up.", "go up")]
    assert got[-1]["next_state"] == "You are in the attic. You win!"
    assert json.loads(got[0]["metadata"])["record"] == {"id": "chat-0001", "tools": "[]"}


def _content(store: Path) -> list[tuple]:
    return [tuple(r.values()) for r in rows(
        store, "SELECT task_id, t, state, action, reasoning, next_state, reward, done, success "
               "FROM steps ORDER BY task_id, t")]


def test_containers_gz_zst_bom_parquet_hf(tmp_path, run_cli):
    """The same AgentInstruct records from every container give the same transitions."""
    import datasets

    items = [json.loads(line) for line in (DATA / "agentinstruct_os.jsonl").read_text()
             .splitlines()] + json.loads((DATA / "agentinstruct_alfworld.json").read_text())
    text = "".join(json.dumps(i) + "\n" for i in items)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    with pa.CompressedOutputStream(str(tmp_path / "a.json.zst"), "zstd") as out:
        out.write(json.dumps(items, indent=1).encode())
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(items).encode())
    table = pa.Table.from_pylist([{"id": i["id"], "conversations": [
        {"from": "human" if t.get("role", t.get("from")) in ("user", "human") else "gpt",
         "value": t.get("content", t.get("value")), "loss": t.get("loss")}
        for t in i["conversations"]]} for i in items])
    pq.write_table(table, tmp_path / "a.parquet")
    datasets.DatasetDict({"train": datasets.Dataset(table)}).save_to_disk(str(tmp_path / "hf"))
    expected = None
    for name in ("a.jsonl.gz", "a.json.zst", "bom.json", "a.parquet", "hf"):
        report = ingest(run_cli, tmp_path / name, "--store", tmp_path / f"S-{name}")
        assert report["files"][0]["format"] == ("hf" if name == "hf" else "agentinstruct"), name
        got = _content(tmp_path / f"S-{name}")
        assert len(got) == 5, name
        expected = expected or got
        assert got == expected, name


def test_single_json_object_file(tmp_path, run_cli):
    item = json.loads((DATA / "sharegpt_adventure.json").read_text())[0]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(item, indent=2))
    report = ingest(run_cli, path, "--store", tmp_path / "S", "--env", "adventure")
    assert report["totals"]["steps_added"] == 2


def test_unknown_shape_names_keys(tmp_path, run_cli):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    code, _, err = run_cli("ingest", path, "--store", tmp_path / "S")
    assert code == 2 and f"{path}:1" in err and "completion, prompt" in err
    assert not (tmp_path / "S").exists()


def _mixed_file(tmp_path: Path) -> Path:
    good = [json.loads(line) for line in (DATA / "agentgym_webshop.jsonl").read_text()
            .splitlines()]
    bad_role = json.loads(json.dumps(good[1]))
    bad_role["item_id"] = "webshop_43"
    bad_role["conversations"][3]["from"] = "robot"
    no_agent = {"item_id": "webshop_44", "conversations": [{"from": "human", "value": "hi"}]}
    lines = [json.dumps(good[0]), json.dumps(bad_role), "{not json", json.dumps(no_agent),
             json.dumps(good[1])]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_on_error_skip_writes_good_records_and_rejects(tmp_path, run_cli):
    path = _mixed_file(tmp_path)
    ingest(run_cli, DATA / "sharegpt_adventure.json", "--store", tmp_path / "S", "--env", "a")
    before = snapshot(tmp_path / "S")
    code, out, err = run_cli("ingest", path, "--store", tmp_path / "S")  # default: all or nothing
    assert code == 2 and out == "" and f"{path}:2" in err and "conversations[3].from" in err
    assert snapshot(tmp_path / "S") == before
    rejects = tmp_path / "rejects.jsonl"
    report = ingest(run_cli, path, "--store", tmp_path / "S", "--on-error", "skip",
                    "--rejects", rejects)
    assert report["totals"]["episodes_added"] == 2 and report["totals"]["rejected"] == 3
    assert report["rejects"] == str(rejects)
    got = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in got] == [(2, "conversations[3].from"), (3, None),
                                                      (4, None)]
    assert "robot" in got[0]["reason"] and "not valid JSON" in got[1]["reason"]
    assert "no agent turn" in got[2]["reason"] and {r["file"] for r in got} == {str(path)}
    assert {r["task_id"] for r in rows(tmp_path / "S", "SELECT DISTINCT task_id FROM steps")} \
        == {"webshop_41", "webshop_42", "a_chat-0001"}
    report = ingest(run_cli, path, "--store", tmp_path / "S2", "--on-error", "skip")
    assert Path(report["rejects"]).parent == tmp_path / "S2" / "manifests"


def test_store_with_metadata_reads_in_duckdb_pyarrow_datasets(tmp_path, run_cli):
    import datasets
    import duckdb

    ingest(run_cli, DATA / "agentgym_webshop.jsonl", "--store", tmp_path / "S")
    files = [str(p) for p in ReplayStore.open(tmp_path / "S").segments("steps")]
    assert pq.read_table(files[0]).column("metadata").null_count == 0
    con = duckdb.connect()
    [(n,)] = con.execute(f"SELECT count(metadata) FROM read_parquet({files!r})").fetchall()
    assert n == 4
    ds = datasets.load_dataset("parquet", data_files=files, split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert json.loads(ds[0]["metadata"])["format"] == "agentgym"


def test_store_segments_without_metadata_still_read(tmp_path, run_cli):
    """A store written before the column existed: its steps read with metadata null."""
    from dreamgym_cli.store import segments, synthetic

    store = ReplayStore.open(tmp_path / "S", create=True)
    [(tasks, episodes, old_steps)] = list(synthetic.arrow_batches(20, 10, 50))
    old_steps = old_steps.drop_columns(["metadata"])
    catalog = store.catalog()
    for name, table in (("tasks", tasks), ("episodes", episodes), ("steps", old_steps)):
        entry = segments.write_segment(store.path, name, table, catalog["next_seq"])
        catalog["next_seq"] += 1
        catalog["tables"].setdefault(name, []).append(entry)
    catalog["generation"] += 1
    segments.write_catalog(store.path, catalog)
    ingest(run_cli, DATA / "agentgym_webshop.jsonl", "--store", tmp_path / "S")
    counts = rows(tmp_path / "S", "SELECT count(*) AS n, count(metadata) AS m FROM steps")
    assert counts == [{"n": 24, "m": 4}]
    assert ReplayStore.open(tmp_path / "S").read_table("steps").num_rows == 24
