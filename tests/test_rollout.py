"""The rollout engine and the vector env on real TextWorld games with a tiny real policy."""

from __future__ import annotations

import pytest
import torch

from tests.agent_fixtures import one_thread  # noqa: F401
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401


@pytest.fixture(scope="module")
def policy(tw_simple_tasks, one_thread):  # noqa: F811
    """A fresh tiny:1m model whose tokenizer learned the games' first prompts."""
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.llm.models import load_model
    from dreamgym_cli.stages.train_agent_rl import corpus_from_env

    with VectorEnv("textworld", workers=0) as env:
        texts = corpus_from_env(env, tw_simple_tasks)
    return load_model("tiny:1m", texts=texts, full=True, seed=0)


def _rollouts(policy, tasks, *, group=2, turns=2, budget=None, workers=0, seed=0, env=None):
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.llm.generate import open_backend
    from dreamgym_cli.rl.rollout import RolloutSettings, run_rollouts

    model, tokenizer = policy
    settings = RolloutSettings(max_new_tokens=12, max_turns=turns, seed=seed)
    own = env is None
    env = env or VectorEnv("textworld", workers=workers, max_steps=turns)
    try:
        backend = open_backend("transformers", model=model, tokenizer=tokenizer)
        episodes = run_rollouts(env, backend, tokenizer, tasks, settings, group_size=group,
                                max_env_steps=budget)
    finally:
        if own:
            env.close()
    return episodes, env


def test_rollout_keeps_the_sampled_ids_and_logprobs_of_the_policy(policy, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.llm.sft import encode_prompt
    from dreamgym_cli.rl.agent_prompt import build_agent_prompt
    from dreamgym_cli.rl.policy import token_counter
    from dreamgym_cli.rl.samples import score_turns

    model, tokenizer = policy
    episodes, _ = _rollouts(policy, tw_simple_tasks[:2])
    assert len(episodes) == 4 and [e.group for e in episodes] == [0, 0, 1, 1]
    turns = [t for e in episodes for t in e.turns]
    assert len(turns) == 8  # 2 turns each: the turn limit, nobody wins at random in 2 moves
    # the first prompt is exactly the agent prompt of the reset state, chat-encoded
    first = episodes[0].turns[0]
    text = build_agent_prompt(tw_simple_tasks[0].instruction, [], first.state, first.admissible,
                              think=False, history_budget_tokens=256,
                              count_tokens=token_counter(tokenizer))
    assert first.prompt_ids == encode_prompt(tokenizer, text)
    # the second turn's prompt carries the first turn's (state, action) in its history
    second = episodes[0].turns[1]
    assert first.action in tokenizer.decode(second.prompt_ids)
    assert second.state == first.next_state
    # log-probs kept from sampling = a fresh forward pass over the kept ids (no re-tokenizing)
    recomputed, _ = score_turns(model, turns, tokenizer.pad_token_id, micro=3)
    for turn, again in zip(turns, recomputed):
        assert len(turn.token_ids) == len(turn.logprobs) == len(again) >= 1
        assert torch.allclose(torch.tensor(turn.logprobs), torch.tensor(again), atol=1e-4)


def test_answer_mask_covers_exactly_the_generated_tokens(policy, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.rl.batching import collate_turns

    episodes, _ = _rollouts(policy, tw_simple_tasks[:1], turns=1)
    turns = [t for e in episodes for t in e.turns]
    batch = collate_turns(turns, pad_id=0)
    for i, t in enumerate(turns):
        p, c = len(t.prompt_ids), len(t.token_ids)
        row = batch.answer_mask[i]
        assert int(row.sum()) == c
        assert not row[:p - 1].any() and row[p - 1:p - 1 + c].all() and not row[p - 1 + c:].any()
        assert batch.targets[i][row].tolist() == t.token_ids  # masked targets = sampled tokens
        assert batch.old_logprobs[i][row].tolist() == pytest.approx(t.logprobs)


def test_invalid_actions_and_format_errors_are_counted(policy, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.rl.rollout import rollout_metrics

    episodes, _ = _rollouts(policy, tw_simple_tasks, turns=1)
    turns = [t for e in episodes for t in e.turns]
    m = rollout_metrics(episodes)
    invalid = sum(t.action not in t.admissible for t in turns) / len(turns)
    assert m["rollout/invalid_action_rate"] == pytest.approx(invalid)
    assert m["rollout/format_error_rate"] == pytest.approx(
        sum(not t.valid_format for t in turns) / len(turns))
    assert m["rollout/episodes"] == 6 and m["rollout/turns"] == 6


def test_a_step_budget_is_never_exceeded(policy, tw_simple_tasks):  # noqa: F811
    episodes, env = _rollouts(policy, tw_simple_tasks, group=2, turns=3, budget=7)
    assert sum(e.length for e in episodes) == 7 == env.steps_taken
    assert any(e.truncated and e.length < 3 for e in episodes)


def test_worker_processes_give_the_same_episodes_as_in_process(policy, tw_simple_tasks):  # noqa: F811
    a, _ = _rollouts(policy, tw_simple_tasks, group=1, turns=2, workers=0, seed=5)
    b, _ = _rollouts(policy, tw_simple_tasks, group=1, turns=2, workers=2, seed=5)
    for x, y in zip(a, b):
        assert [t.token_ids for t in x.turns] == [t.token_ids for t in y.turns]
        assert [(t.state, t.next_state, t.reward) for t in x.turns] == \
            [(t.state, t.next_state, t.reward) for t in y.turns]


def test_vector_env_plays_the_expert_to_a_win(tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.envs.registry import make_env
    from dreamgym_cli.envs.vector import VectorEnv

    experts = [make_env("textworld") for _ in tw_simple_tasks]
    with VectorEnv("textworld", workers=2) as env:
        env.reset_batch(list(tw_simple_tasks))
        for e, task in zip(experts, tw_simple_tasks):
            e.reset(task)
        wins = [False] * len(experts)
        for _ in range(30):
            actions = [None if env.done[i] else experts[i].expert_action()
                       for i in range(len(experts))]
            if all(a is None for a in actions):
                break
            for i, result in enumerate(env.step_batch(actions)):
                if result is not None:
                    experts[i].step(actions[i])
                    wins[i] = wins[i] or bool(result.success)
    for e in experts:
        e.close()
    assert all(wins)


def test_env_safe_removes_what_the_interpreter_would_choke_on():
    from dreamgym_cli.envs.base import clean_action as env_safe

    assert env_safe("\\x go  east\n") == "x go east"
    assert env_safe("take key\x00") == "take key"
    assert env_safe("open door") == "open door"


def test_episodes_become_valid_store_rows(policy, tw_simple_tasks, tmp_path):  # noqa: F811
    from dreamgym_cli.rl.rollout import append_to_store, episode_records
    from dreamgym_cli.store import ReplayStore

    episodes, _ = _rollouts(policy, tw_simple_tasks[:2], group=1, turns=2)
    store = ReplayStore.open(tmp_path / "S", create=True)
    added = append_to_store(store, episode_records(episodes, "real", "P-test"))
    assert added == 2
    rows = store.sql("SELECT source, policy, count(*) AS n FROM steps GROUP BY ALL").to_pylist()
    assert rows == [{"source": "real", "policy": "P-test", "n": 4}]
