"""The RL training defects of issue 11, each pinned by a test that fails without its fix:
lr warm-up and several optimizer steps per iteration, PPO's bootstrap at truncation and a critic
that cannot steer the trunk, the off-list action penalty, SFT on clean data, dream retrieval of
real transitions only, and validation measurements in the training log."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

from tests.agent_fixtures import agent_workdir, one_thread, sft_policy  # noqa: F401
from tests.agent_fixtures import train_tiny_rl
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401


def _turn(valid=True, allowed=True, reward=0.0):
    from dreamgym_cli.rl.rollout import Turn

    return Turn(state="s", admissible=["go east"], prompt_ids=[1, 2], token_ids=[3],
                logprobs=[-1.0], text="", action="go east", valid_format=valid,
                in_admissible=allowed, reward=reward)


def _episode(group, success, turns):
    from dreamgym_cli.rl.rollout import EpisodeRollout
    from dreamgym_cli.schema import Task

    task = Task(task_id="t", env="textworld", instruction="i", spec={}, split="train")
    e = EpisodeRollout(task, group, f"e{group}-{success}-{len(turns)}", turns)
    if success:
        e.turns[-1].done, e.turns[-1].success = True, True
    return e


# ---- pure parts ----------------------------------------------------------------------------


def test_warmup_factor_rises_linearly_then_stays_at_one():
    from dreamgym_cli.rl.trainer import warmup_factor

    assert [warmup_factor(u, 4) for u in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_gae_bootstraps_a_cut_episode_with_the_value_after_its_last_turn():
    from dreamgym_cli.rl.algorithms import gae

    rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    values = torch.tensor([[0.5, 0.25], [0.5, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5,
                   last_values=torch.tensor([2.0, 0.0]))
    # row 0, cut after 2 turns with V(s_2) = 2: δ1 = 1 + 0.9·2 − 0.25 = 2.55,
    # δ0 = 0 + 0.9·0.25 − 0.5 = −0.275, A0 = δ0 + 0.45·δ1 = 0.8725
    assert adv[0].tolist() == pytest.approx([0.8725, 2.55])
    assert ret[0].tolist() == pytest.approx([1.3725, 2.8])
    # row 1 ended by the env (bootstrap 0): δ0 = −0.5
    assert adv[1, 0].item() == pytest.approx(-0.5) and adv[1, 1].item() == 0.0
    plain, _ = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    assert plain[0, 1].item() == pytest.approx(0.75)  # no bootstrap: the cut looks terminal


def test_invalid_action_penalty_lowers_the_outcome_of_off_list_and_malformed_actions():
    from dreamgym_cli.rl.samples import grpo_samples

    clean = _episode(0, False, [_turn(), _turn()])
    sloppy = _episode(0, False, [_turn(allowed=False), _turn(valid=False)])
    samples = grpo_samples([clean, sloppy], "success", invalid_penalty=0.1)
    assert samples[0].advantage > 0 > samples[2].advantage  # the clean failure is preferred
    same = grpo_samples([clean, sloppy], "success")
    assert all(s.advantage == 0 for s in same)  # without the penalty: no signal at all


def test_sft_selection_prefers_expert_episodes_and_cleans_successful_ones():
    from dreamgym_cli.stages.train_agent_sft import select_sft_episodes

    step = lambda a: {"action": a, "admissible": ["go east", "take key"]}  # noqa: E731
    expert = ({"instruction": "i"}, {"policy": "expert", "success": True}, [step("go east")])
    mixed = ({"instruction": "i"}, {"policy": "mixed-0.3", "success": True},
             [step("go east"), step("dance"), step("take key")])
    failed = ({"instruction": "i"}, {"policy": "mixed-0.3", "success": False}, [step("go east")])
    episodes = [expert, mixed, failed]
    assert select_sft_episodes(episodes, "auto") == [expert]
    cleaned = select_sft_episodes([mixed, failed], "auto")  # no expert: successful, cleaned
    assert [s["action"] for s in cleaned[0][2]] == ["go east", "take key"] and len(cleaned) == 1
    assert select_sft_episodes(episodes, "all") == episodes


# ---- on a tiny real policy -------------------------------------------------------------------


def _policy(sft_policy):  # noqa: F811
    from dreamgym_cli.rl.policy import load_policy

    return load_policy(sft_policy)


def _rollouts(model, tokenizer, tasks, max_turns=2):
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.llm.generate import open_backend
    from dreamgym_cli.rl.rollout import RolloutSettings, run_rollouts

    with VectorEnv("textworld", workers=0, max_steps=max_turns) as env:
        return run_rollouts(env, open_backend("transformers", model=model, tokenizer=tokenizer),
                            tokenizer, tasks, RolloutSettings(max_new_tokens=12,
                                                              max_turns=max_turns, seed=1),
                            group_size=2)


def test_several_warmed_up_optimizer_steps_per_iteration(sft_policy, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.rl.learner import RLSettings
    from dreamgym_cli.rl.samples import grpo_samples
    from dreamgym_cli.rl.trainer import make_learner, update_policy

    model, tokenizer, _ = _policy(sft_policy)
    settings = RLSettings(lr=1e-3, kl_coef=0.0, mini_batches=4, warmup_steps=8)
    learner = make_learner(model, tokenizer, settings)
    samples = grpo_samples(_rollouts(model, tokenizer, tw_simple_tasks[:2]), "return")
    for s in samples:
        s.advantage = 1.0
    metrics = update_policy(learner, samples, settings, random.Random(0))
    assert learner.updates == 4
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 4 / 8)
    assert metrics["train/lr"] == pytest.approx(1e-3 * (1 + 2 + 3 + 4) / 8 / 4)


def test_a_cut_episode_carries_its_next_prompt_for_the_bootstrap(sft_policy, tw_simple_tasks):  # noqa: F811
    model, tokenizer, _ = _policy(sft_policy)
    episodes = _rollouts(model, tokenizer, tw_simple_tasks[:1], max_turns=1)
    for e in episodes:  # the env's 1-step limit ends every episode: a cut, not a failure
        assert e.turns[-1].done and e.truncated and e.final_prompt_ids
        assert e.final_prompt_ids != e.turns[0].prompt_ids  # the prompt of the state after


def test_ppo_critic_is_detached_from_the_trunk_by_default(sft_policy, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.rl.batching import collate_turns, forward_turns
    from dreamgym_cli.rl.value_head import load_value_head

    model, tokenizer, _ = _policy(sft_policy)
    turns = [t for e in _rollouts(model, tokenizer, tw_simple_tasks[:1]) for t in e.turns]
    head = load_value_head(model, None)
    torch.nn.init.normal_(head.linear.weight)
    batch = collate_turns(turns, tokenizer.pad_token_id or 0)
    for detach, trunk_moves in ((True, False), (False, True)):
        model.zero_grad(set_to_none=True)
        out = forward_turns(model, batch, value_head=head, detach_value=detach)
        out.values.pow(2).sum().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert (any(g.abs().sum() > 0 for g in grads)) == trunk_moves
        assert head.linear.weight.grad is not None


def test_dream_retrieval_returns_real_transitions_unless_asked(agent_workdir, tmp_path):  # noqa: F811
    """A synthetic copy of a real step with a hallucinated reply is the best match for its
    own query; the dream env's default never hands it back as context."""
    from dreamgym_cli.experience.examples import retrieve_grouped
    from dreamgym_cli.schema import validate_episode
    from dreamgym_cli.store import ReplayStore

    shutil.copytree(agent_workdir / "S", tmp_path / "S")
    store = ReplayStore.open(tmp_path / "S")
    task, episode, steps = next(iter(store.iter_episodes(where="source = 'real'")))
    step = steps[0]
    fake = validate_episode({
        "episode_id": "dream-fake", "task": task, "source": "synthetic", "policy": "p",
        "success": None, "steps": [{"t": 0, "state": step["state"],
                                    "admissible": step["admissible"], "action": step["action"],
                                    "next_state": "HALLUCINATED", "reward": 5.0, "done": False,
                                    "success": None, "reasoning": None,
                                    "created_at": step["created_at"]}]})
    store.append([fake[0]], [fake[1]], fake[2])
    query = [{"instruction": task["instruction"], "state": step["state"],
              "action": step["action"]}]
    anything = retrieve_grouped(store, query, [frozenset()], 3)[0]
    real = retrieve_grouped(store, query, [frozenset()], 3, ("real",))[0]
    assert "HALLUCINATED" in [r["next_state"] for r in anything]
    assert len(real) == 3 and all(r["source"] == "real" for r in real)


def test_validation_success_is_logged_before_training_and_every_k_iterations(
        run_cli, sft_policy, tw_simple_file, tmp_path):  # noqa: F811
    code, out, err = train_tiny_rl(run_cli, sft_policy, "textworld", tw_simple_file,
                                   tmp_path / "P", "--iterations", "3", "--batch-tasks", "1",
                                   "--workers", "0", "--eval-tasks", tw_simple_file,
                                   "--eval-every", "2", "--eval-turns", "3", "--json")
    assert code == 0, err
    assert json.loads(out)["iterations_run"] == 3  # validation lines are not iterations
    lines = [json.loads(x) for x in (tmp_path / "P" / "metrics.jsonl").read_text().splitlines()]
    measured = [x["iteration"] for x in lines if "eval/success_rate" in x]
    assert measured == [0, 2, 3]  # before training, every 2, and after the last
    assert lines[0]["train/updates"] == 0 and lines[-1]["train/updates"] == 3 * 4
    assert all(x["eval/episodes"] == 3 for x in lines if "eval/episodes" in x)
    assert lines[-1]["real_steps_used"] == sum(x.get("rollout/turns", 0) for x in lines)


def test_generated_solved_counts_groups_of_generated_tasks_won_at_least_once():
    import dataclasses

    from dreamgym_cli.curriculum.sampler import generated_solved

    won, lost = _episode(1, True, [_turn()]), _episode(1, False, [_turn()])
    never = _episode(2, False, [_turn()])
    seed_task = _episode(0, True, [_turn()])
    for e in (won, lost, never):
        e.task = dataclasses.replace(e.task, origin="generated", parent_id="t")
    out = generated_solved([seed_task, won, lost, never])
    assert out == {"curriculum/generated_groups": 2, "curriculum/generated_groups_solved": 1,
                   "curriculum/generated_solved_share": 0.5}
    assert "curriculum/generated_solved_share" not in generated_solved([seed_task])


def test_closest_listed_picks_the_most_similar_admissible_action():
    from dreamgym_cli.rl.rollout import closest_listed

    listed = ["take old key from antique trunk", "open chest drawer", "go east"]
    assert closest_listed("take old key from chest drawer", listed) == listed[0]
    assert closest_listed("GO EAST", listed) == "go east"
    assert closest_listed("open drawer", listed) == "open chest drawer"


def test_listed_interface_sends_only_listed_actions_and_still_counts_off_list_ones(
        sft_policy, tw_simple_tasks):  # noqa: F811
    """With `listed` every action the env receives is one it listed, while `in_admissible` (and
    so the invalid-action rate) still reports what the policy generated."""
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.llm.generate import open_backend
    from dreamgym_cli.rl.rollout import RolloutSettings, run_rollouts

    model, tokenizer, _ = _policy(sft_policy)
    backend = open_backend("transformers", model=model, tokenizer=tokenizer)
    out = {}
    for interface in ("free", "listed"):
        with VectorEnv("textworld", workers=0, max_steps=3) as env:
            out[interface] = run_rollouts(env, backend, tokenizer, tw_simple_tasks, RolloutSettings(
                max_new_tokens=12, max_turns=3, seed=5, temperature=1.5,
                action_interface=interface), group_size=2)
    free = [t for e in out["free"] for t in e.turns]
    listed = [t for e in out["listed"] for t in e.turns]
    assert all(t.action in t.admissible for t in listed if t.admissible)
    assert any(t.in_admissible is False for t in free)  # hot sampling: off-list answers occur
    off = [t for t in listed if t.in_admissible is False]
    assert off and all(t.action in t.admissible for t in off)
