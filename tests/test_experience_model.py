"""annotate → train-em → dream env → eval-em on real TextWorld data and a tiny real model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.agent_fixtures import annotated_store, train_tiny_em
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401


@pytest.fixture(scope="module")
def em_workdir(tmp_path_factory, tw_simple_file) -> Path:  # noqa: F811
    """A store of real expert + random episodes on 3 games, annotated with the rules annotator."""
    from dreamgym_cli.cli import main

    d = tmp_path_factory.mktemp("em")
    assert main(["collect", "--tasks", str(tw_simple_file), "--policy", "mixed", "--epsilon",
                 "0.5", "--episodes-per-task", "2", "--max-steps", "8", "--seed", "3",
                 "--out", str(d / "E.jsonl")]) == 0
    assert main(["collect", "--tasks", str(tw_simple_file), "--policy", "expert",
                 "--episodes-per-task", "1", "--out", str(d / "H.jsonl")]) == 0
    return annotated_store(d, "E.jsonl")


@pytest.fixture(scope="module")
def em_dir(em_workdir) -> Path:
    return train_tiny_em(em_workdir, "--max-steps", "3", "--batch-size", "4")


def test_annotate_fills_every_real_transition_once(em_workdir, run_cli):
    from dreamgym_cli.experience.episodes import load_reasoning
    from dreamgym_cli.store import ReplayStore

    store = ReplayStore.open(em_workdir / "S")
    reasoning = load_reasoning(store)
    hashes = store.sql("SELECT content_hash FROM steps WHERE source = 'real'")
    assert set(hashes.column(0).to_pylist()) <= set(reasoning)
    assert all(len(r) > 20 for r in reasoning.values())
    code, out, _ = run_cli("annotate", "--store", em_workdir / "S", "--json")
    assert code == 0
    again = json.loads(out)
    assert again["steps_annotated"] == 0 and again["annotator"] == "rules-v1"
    manifests = sorted((em_workdir / "S" / "manifests").glob("annotate-*.json"))
    assert manifests and json.loads(manifests[-1].read_text())["metrics"]["annotator"] == "rules-v1"


def test_train_em_writes_model_settings_and_manifest(em_dir, em_workdir, run_cli):
    from dreamgym_cli.artifacts import read_manifest
    from dreamgym_cli.experience.examples import EMSettings

    settings = EMSettings.load(em_dir)
    assert settings.reasoning and settings.retrieval_k == 3 and settings.history == 2
    manifest = read_manifest(em_dir)
    assert manifest["stage"] == "train-em"
    assert manifest["metrics"]["steps"] == 3 and manifest["metrics"]["train/loss"] > 0
    assert manifest["metrics"]["eval/loss"] is not None
    assert manifest["inputs"]["store"]["sha256"]
    # unchanged inputs and config: skipped
    code, out, _ = run_cli("train-em", "--store", em_workdir / "S", "--base", "tiny:1m",
                           "--max-steps", "3", "--batch-size", "4", "--max-length", "512",
                           "--out", em_dir, "--json")
    assert code == 0 and json.loads(out)["skipped"] is True


def test_train_em_ablation_switches_are_saved(em_workdir, run_cli):
    from dreamgym_cli.experience.examples import EMSettings

    out = em_workdir / "EM-ablate"
    code, stdout, err = run_cli("train-em", "--store", em_workdir / "S", "--base", "tiny:1m",
                                "--max-steps", "1", "--batch-size", "2", "--max-length", "256",
                                "--no-reasoning", "--retrieval-k", "0", "--history", "0",
                                "--out", out, "--json")
    assert code == 0, err
    settings = EMSettings.load(out)
    assert (settings.reasoning, settings.retrieval_k, settings.history) == (False, 0, 0)
    assert json.loads(stdout)["em/reasoning"] is False


def test_train_em_without_reasoning_asks_for_annotate(tmp_path, em_workdir, run_cli):
    store = tmp_path / "S"
    code, _, _ = run_cli("ingest", em_workdir / "E.jsonl", "--store", store)
    assert code == 0
    code, _, err = run_cli("train-em", "--store", store, "--base", "tiny:1m", "--max-steps",
                           "1", "--out", tmp_path / "EM")
    assert code == 2 and "dreamgym annotate" in err
    assert not (tmp_path / "EM").exists()


def test_dream_env_steps_a_batch_and_counts_invalid(em_dir, em_workdir, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.envs.dream import DreamEnv

    env = DreamEnv(em_dir, max_retries=1, max_steps=2, seed=0)
    observations = env.reset_batch(tw_simple_tasks[:2])
    assert all(o.text.startswith("Location:") for o in observations)  # the real initial state
    results = env.step_batch(["look", "inventory"])
    assert all(r is not None for r in results)
    steps = env.metrics["dream/steps"]
    assert steps == 2
    # a barely trained model rarely writes a parseable completion: invalid ones are explicit
    for r in results:
        if not r.info["valid"]:
            assert r.done and r.reward == 0.0 and r.success is False
    active = [None if env.slots[i].done else "look" for i in range(2)]
    if any(a is not None for a in active):
        for r in env.step_batch(active):
            assert r is None or r.done  # the step limit (2) ends every episode
    assert all(s.done for s in env.slots)
    env.close()


def test_dream_env_writes_synthetic_episodes(em_dir, em_workdir, tw_simple_tasks, tmp_path):  # noqa: F811
    from dreamgym_cli.envs.dream import DreamEnv
    from dreamgym_cli.store import ReplayStore

    store_dir = tmp_path / "S"
    shutil.copytree(em_workdir / "S", store_dir)
    store = ReplayStore.open(store_dir)
    env = DreamEnv(em_dir, store=store, max_retries=0, max_steps=1, write_to_store=True,
                   policy_name="test-policy", seed=1)
    env.reset_batch(tw_simple_tasks[:2])
    env.step_batch(["look", "look"])
    assert env.flush_to_store() == 2
    rows = store.sql("SELECT source, policy, count(*) FROM episodes WHERE source = 'synthetic' "
                     "GROUP BY 1, 2").to_pylist()
    assert rows == [{"source": "synthetic", "policy": "test-policy", "count_star()": 2}]
    env.close()


def test_eval_em_reports_fidelity(em_dir, em_workdir, run_cli):
    out = em_workdir / "D"
    code, stdout, err = run_cli("eval-em", "--em", em_dir, "--episodes", em_workdir / "H.jsonl",
                                "--out", out, "--max-episodes", "2", "--json")
    assert code == 0, err
    result = json.loads(stdout)  # exactly one JSON object on stdout
    for key in ("em/reward_accuracy", "em/done_accuracy", "em/next_state_token_f1",
                "em/parse_failure_rate", "em/eps_R", "em/eps_P",
                "em/multistep_success_agreement"):
        assert key in result
    assert 0.0 <= result["em/reward_accuracy"] <= 1.0
    assert result["em/transitions"] > 0
    for name in ("fidelity.json", "report.md", "fidelity.png", "examples.jsonl",
                 "manifest.json"):
        assert (out / name).is_file(), name


def test_fidelity_metrics_by_hand():
    from dreamgym_cli.stages.eval_em import set_f1, token_f1

    assert token_f1("the key is here", "the key is here") == 1.0
    # pred tokens {a, b, c}, gold {a, b, d}: precision 2/3, recall 2/3 -> F1 2/3
    assert token_f1("a b c", "a b d") == pytest.approx(2 / 3)
    assert token_f1("x", "y") == 0.0
    assert set_f1(["go east", "look"], ["go east", "take key"]) == pytest.approx(0.5)
    assert set_f1(None, ["look"]) == 0.0 and set_f1(["look"], None) is None


def test_dream_prompts_are_cut_like_training_prompts():
    """A prompt longer than max_length − max_new_tokens loses its left end (training did the
    same), so generation never runs past the positions the model was trained on."""
    from dreamgym_cli.envs.dream import cut_prompt
    from dreamgym_cli.experience.examples import EMSettings

    ids = list(range(100))
    assert cut_prompt(ids, EMSettings(max_length=None)) == ids  # models saved before the field
    assert cut_prompt(ids, EMSettings(max_length=120, max_new_tokens=40)) == ids[20:]
    assert cut_prompt(ids, EMSettings(max_length=400, max_new_tokens=40)) == ids
