"""train-agent: the GRPO/PPO update, determinism, sim-to-real budget, enrichment, resume, and the
DESIGN §12 chain (SFT → GRPO in dream:EM → eval) through the real CLI."""

from __future__ import annotations

import json
import random

import pytest
import torch

from tests.agent_fixtures import agent_workdir, em_dir, one_thread, sft_policy  # noqa: F401
from tests.agent_fixtures import train_tiny_rl
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401


def _policy(sft_policy):  # noqa: F811
    from dreamgym_cli.rl.policy import load_policy

    return load_policy(sft_policy)


def _real_episodes(model, tokenizer, tasks, seed=0):
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.llm.generate import open_backend
    from dreamgym_cli.rl.rollout import RolloutSettings, run_rollouts

    with VectorEnv("textworld", workers=0, max_steps=2) as env:
        return run_rollouts(env, open_backend("transformers", model=model, tokenizer=tokenizer),
                            tokenizer, tasks, RolloutSettings(max_new_tokens=12, max_turns=2,
                                                              seed=seed), group_size=2)


def test_rollout_logprobs_equal_the_trainers_at_a_non_unit_temperature(sft_policy,
                                                                        tw_simple_tasks):  # noqa: F811
    """The PPO/GRPO ratio starts at exactly 1 when sampling at T = 0.5: the rollout stores the
    log-probs of logits / T and the trainer scores them the same way."""
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.llm.generate import open_backend
    from dreamgym_cli.rl.rollout import RolloutSettings, run_rollouts
    from dreamgym_cli.rl.samples import score_turns

    model, tokenizer, _ = _policy(sft_policy)
    backend = open_backend("transformers", model=model, tokenizer=tokenizer)
    with VectorEnv("textworld", workers=0, max_steps=2) as env:
        episodes = run_rollouts(env, backend, tokenizer, tw_simple_tasks[:2],
                                RolloutSettings(max_new_tokens=12, max_turns=2, seed=3,
                                                temperature=0.5))
    turns = [t for e in episodes for t in e.turns]
    pad = tokenizer.pad_token_id or 0
    scored = score_turns(model, turns, pad, 4, temperature=0.5)[0]
    raw = score_turns(model, turns, pad, 4, temperature=1.0)[0]
    gap = max(abs(a - b) for t, s in zip(turns, scored) for a, b in zip(t.logprobs, s))
    assert gap < 1e-4
    assert max(abs(a - b) for t, s in zip(turns, raw) for a, b in zip(t.logprobs, s)) > 1e-2


def test_grpo_update_moves_logprobs_with_the_advantage_and_starts_at_zero_kl(
        sft_policy, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.rl.learner import RLSettings
    from dreamgym_cli.rl.samples import Sample, reference_logprobs, score_turns
    from dreamgym_cli.rl.trainer import make_learner, update_policy

    model, tokenizer, _ = _policy(sft_policy)
    settings = RLSettings(lr=3e-3, kl_coef=0.05, micro_batch_turns=3, mini_batches=1,
                          warmup_steps=0)  # one full-lr step: KL is measured before it
    learner = make_learner(model, tokenizer, settings)
    episodes = _real_episodes(model, tokenizer, tw_simple_tasks[:2])
    turns = [t for e in episodes for t in e.turns]
    signs = [1.0 if i % 2 == 0 else -1.0 for i in range(len(turns))]
    samples = [Sample(t, s) for t, s in zip(turns, signs)]
    refs = reference_logprobs(learner, turns, 4)
    for s, r in zip(samples, refs):
        s.ref_logprobs = r
    before = [sum(lp) for lp in score_turns(model, turns, learner.pad_id, 4)[0]]
    metrics = update_policy(learner, samples, settings, random.Random(0))
    assert metrics["train/kl"] == pytest.approx(0.0, abs=1e-6)  # policy = reference at step 0
    assert metrics["train/clip_fraction"] == 0.0 and metrics["train/grad_norm"] > 0
    after = [sum(lp) for lp in score_turns(model, turns, learner.pad_id, 4)[0]]
    up = [a - b for a, b, s in zip(after, before, signs) if s > 0]
    down = [a - b for a, b, s in zip(after, before, signs) if s < 0]
    assert sum(up) > 0 > sum(down)  # favoured answers more likely, disfavoured less
    # the reference stayed where it was: now the KL is positive
    again = update_policy(learner, samples, settings, random.Random(0))
    assert again["train/kl"] > 1e-6


def test_grpo_advantages_are_shared_by_every_turn_of_an_episode(sft_policy, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.rl.samples import grpo_samples

    model, tokenizer, _ = _policy(sft_policy)
    episodes = _real_episodes(model, tokenizer, tw_simple_tasks[:2])
    for e in episodes:
        for t in e.turns:
            t.reward = 0.0
    episodes[0].turns[-1].reward = 1.0  # group 0: returns 1 and 0; group 1: 0 and 0
    samples = grpo_samples(episodes, "return")
    by_episode = [[s.advantage for s in samples if s.turn in e.turns] for e in episodes]
    assert by_episode[0] == [pytest.approx(0.7071, abs=1e-3)] * 2
    assert by_episode[1] == [pytest.approx(-0.7071, abs=1e-3)] * 2
    assert by_episode[2] == by_episode[3] == [0.0, 0.0]  # equal rewards: no signal


def _train_once(sft_policy, tasks, tmp_path, algo="grpo", iterations=1, resume=False,
                run_dir=None, invalid_penalty=0.0):  # noqa: F811
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.rl.rollout import RolloutSettings
    from dreamgym_cli.rl.learner import RLSettings
    from dreamgym_cli.rl.trainer import make_learner, train
    from dreamgym_cli.rl.value_head import load_value_head

    model, tokenizer, _ = _policy(sft_policy)
    settings = RLSettings(algo=algo, iterations=iterations, batch_tasks=2, group_size=2,
                          lr=1e-3, seed=7, entropy_coef=0.01,  # moves even without reward
                          invalid_penalty=invalid_penalty)
    head = load_value_head(model, None) if algo == "ppo" else None
    learner = make_learner(model, tokenizer, settings, head)
    with VectorEnv("textworld", workers=0, max_steps=2) as env:
        summary = train(learner, env, tasks, settings,
                        RolloutSettings(max_new_tokens=12, max_turns=2, seed=7),
                        run_dir=run_dir or tmp_path, resume=resume, real_env=True)
    return summary, learner


def test_same_seed_same_first_iteration_metrics(sft_policy, tw_simple_tasks, tmp_path):  # noqa: F811
    a, _ = _train_once(sft_policy, tw_simple_tasks, tmp_path / "a")
    b, _ = _train_once(sft_policy, tw_simple_tasks, tmp_path / "b")
    strip = lambda m: {k: v for k, v in m.items() if not k.startswith("time/")}  # noqa: E731
    assert strip(a["first"]) == strip(b["first"])
    assert a["first"]["rollout/episodes"] == 4 and "train/loss" in a["first"]
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["iteration"] == 1


def test_ppo_trains_a_value_head(sft_policy, tw_simple_tasks, tmp_path):  # noqa: F811
    # The tiny policy earns no reward in two turns, so with returns all 0 a zero-initialised
    # critic is already exact and rightly stays put; the penalty for its off-list actions gives
    # the critic non-zero returns to learn.
    summary, learner = _train_once(sft_policy, tw_simple_tasks, tmp_path, algo="ppo",
                                   invalid_penalty=0.1)
    m = summary["first"]
    assert {"train/value_loss", "train/policy_loss", "train/kl"} <= set(m)
    assert all(torch.isfinite(torch.tensor(v)) for k, v in m.items() if k.startswith("train/"))
    assert m["rollout/invalid_action_rate"] > 0 and m["train/value_loss"] > 0  # something to learn
    from safetensors.torch import load_file

    from dreamgym_cli.rl.value_head import load_value_head

    initial = load_value_head(_policy(sft_policy)[0], None).state_dict()  # the head it started as
    saved = load_file(str(tmp_path / "last" / "value_head.safetensors"))  # iteration 1's save
    assert set(saved) == set(initial) == {"linear.weight", "linear.bias"}
    for name, value in saved.items():
        assert torch.isfinite(value).all(), name
        assert torch.equal(value, learner.value_head.state_dict()[name]), name  # the trained head
    assert any(not torch.equal(saved[k], initial[k]) for k in initial), "the value head never moved"


def test_resume_continues_from_the_checkpoint(sft_policy, tw_simple_tasks, tmp_path):  # noqa: F811
    first, learner = _train_once(sft_policy, tw_simple_tasks, tmp_path, iterations=1)
    weights = {k: v.clone() for k, v in learner.model.state_dict().items()}
    resumed, learner2 = _train_once(sft_policy, tw_simple_tasks, tmp_path, iterations=2,
                                    resume=True, run_dir=tmp_path)
    assert resumed["iterations_run"] == 1 and resumed["first"]["iteration"] == 2
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2]
    # iteration 2 started from iteration 1's weights, not from the SFT policy
    fresh = _train_once(sft_policy, tw_simple_tasks, tmp_path / "fresh", iterations=2)[0]
    strip = lambda m: {k: v for k, v in m.items() if not k.startswith("time/")}  # noqa: E731
    assert strip(fresh["last"]) == strip(resumed["last"])
    assert any(not torch.equal(weights[k], v) for k, v in learner2.model.state_dict().items())


def _dream_rl_on_a_store_copy(run_cli, agent_workdir, em_dir, sft_policy, tasks, out, *extra,
                              algo="grpo"):
    """One RL iteration in the dream env that writes to a copy of the agent tests' store (beside
    `out`): (synthetic episodes the store gained, code, stdout, stderr)."""
    import shutil

    store = out.parent / "S"
    shutil.copytree(agent_workdir / "S", store)
    before = _count(store, "synthetic")
    code, stdout, stderr = train_tiny_rl(run_cli, sft_policy, f"dream:{em_dir}", tasks, out,
                                         "--store", store, "--iterations", "1", *extra, "--json",
                                         algo=algo)
    return _count(store, "synthetic") - before, code, stdout, stderr


def _count(store_dir, source):
    from dreamgym_cli.store import ReplayStore

    return ReplayStore.open(store_dir).sql(
        f"SELECT count(*) FROM episodes WHERE source = '{source}'").column(0)[0].as_py()


def test_design_chain_sft_grpo_in_dream_then_eval(run_cli, agent_workdir, em_dir, sft_policy,
                                                  tw_simple_file, tmp_path):  # noqa: F811
    added, code, out, err = _dream_rl_on_a_store_copy(
        run_cli, agent_workdir, em_dir, sft_policy, tw_simple_file, tmp_path / "P1",
        "--batch-tasks", "2", "--mini-batches", "1")
    assert code == 0, err
    result = json.loads(out)
    assert result["iterations_run"] == 1 and result["real_steps_used"] == 0
    assert result["train/updates"] == 1  # one mini-batch: the KL is measured before any step
    assert result["train/kl"] == pytest.approx(0.0, abs=1e-6)
    assert added == result["store/episodes_added"] == 4  # enrichment: every dream episode
    policy = json.loads((tmp_path / "P1" / "policy.json").read_text())
    assert policy["made_by"]["algo"] == "grpo" and policy["max_new_tokens"] == 16
    assert (tmp_path / "P1" / "metrics.jsonl").is_file()
    code, out, err = run_cli("eval", "--policy", tmp_path / "P1", "--tasks", tw_simple_file,
                             "--out", tmp_path / "R", "--max-steps-per-episode", "3", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["episodes"] == 3 and len(report["per_task"]) == 3
    assert (tmp_path / "R" / "success.png").stat().st_size > 1000
    from dreamgym_cli.trajectories import read_episodes

    kept = list(read_episodes(tmp_path / "R" / "episodes.jsonl"))  # eval-em's held-out input
    assert len(kept) == 3 and all(e[1]["source"] == "real" for e in kept)


def test_no_enrich_leaves_the_store_alone(run_cli, agent_workdir, em_dir, sft_policy,
                                          tw_simple_file, tmp_path):  # noqa: F811
    added, code, out, err = _dream_rl_on_a_store_copy(
        run_cli, agent_workdir, em_dir, sft_policy, tw_simple_file, tmp_path / "P2",
        "--batch-tasks", "1", "--no-enrich", algo="ppo")
    assert code == 0, err
    assert added == 0
    assert (tmp_path / "P2" / "value_head.safetensors").is_file()


def test_sim_to_real_stops_at_the_real_step_budget(run_cli, sft_policy, tw_simple_file,
                                                   tmp_path):  # noqa: F811
    from dreamgym_cli.artifacts import read_manifest

    code, out, err = train_tiny_rl(run_cli, sft_policy, "textworld", tw_simple_file,
                                   tmp_path / "P3", "--max-real-steps", "11", "--batch-tasks",
                                   "2", "--workers", "0", "--json")
    assert code == 0, err
    metrics = read_manifest(tmp_path / "P3")["metrics"]
    # A group of 2 episodes of up to 2 turns reserves 4 steps: 2 groups fit in 11, then the 3
    # left hold no whole group, so training stops instead of running 3 one-turn fragments.
    lines = [json.loads(x) for x in (tmp_path / "P3" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["rollout/episodes"] == 4
    assert lines[0]["rollout/turns"] == metrics["real_steps_used"] <= 11
    assert all(x["rollout/truncated_rate"] in (0.0, 1.0) for x in lines)
    lengths = lines[0]["rollout/length_mean"]
    assert lengths == lines[0]["rollout/turns"] / 4 and lengths > 1  # whole episodes, no stubs


def test_sim_to_real_budget_below_one_group_is_refused(run_cli, sft_policy, tw_simple_file,
                                                        tmp_path):  # noqa: F811
    code, out, err = train_tiny_rl(run_cli, sft_policy, "textworld", tw_simple_file,
                                   tmp_path / "P4", "--max-real-steps", "3", "--workers", "0")
    assert code == 2 and "max_real_steps" in err and "one group" in " ".join(err.split())
    assert not (tmp_path / "P4").exists()


@pytest.mark.parametrize("args, words", [
    (("--algo", "grpo", "--base", "tiny:1m", "--init", "X"), "exactly one of --base"),
    (("--algo", "sft", "--base", "tiny:1m"), "--store"),
    (("--algo", "grpo", "--base", "tiny:1m"), "--tasks"),
    (("--algo", "grpoo", "--base", "tiny:1m"), "did you mean 'grpo'"),
])
def test_bad_options_exit_2(run_cli, tmp_path, args, words):
    code, out, err = run_cli("train-agent", *args, "--out", tmp_path / "P")
    assert code == 2 and words in " ".join(err.split()) and out == ""
    assert not (tmp_path / "P").exists()


def test_sft_from_a_store_without_successes_says_so(run_cli, tmp_path, agent_workdir):  # noqa: F811
    from dreamgym_cli.store import ReplayStore

    empty = ReplayStore.open(tmp_path / "S", create=True)
    del empty
    code, _, err = run_cli("train-agent", "--algo", "sft", "--store", tmp_path / "S", "--base",
                           "tiny:1m", "--out", tmp_path / "P")
    assert code == 2 and "no episodes for --sft-data auto" in " ".join(err.split())
