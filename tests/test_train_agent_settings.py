"""train-agent's flat config builds each part's settings from its group of fields: every name of a
group is a field on both sides, no shared field is left out, and the settings are the ones the
field-by-field copies used to build."""

from __future__ import annotations

import dataclasses

import pytest

from dreamgym_cli.curriculum.sampler import CurriculumSettings
from dreamgym_cli.llm.sft import SFTSettings
from dreamgym_cli.rl.learner import RLSettings
from dreamgym_cli.rl.policy import PolicySettings
from dreamgym_cli.rl.rollout import RolloutSettings
from dreamgym_cli.stages import train_agent
from dreamgym_cli.stages.train_agent import TrainAgentConfig


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("group,settings", [
    (train_agent.SFT_FIELDS, SFTSettings), (train_agent.RL_FIELDS, RLSettings),
    (train_agent.CURRICULUM_FIELDS, CurriculumSettings),
    (train_agent.POLICY_FIELDS, PolicySettings)])
def test_every_group_field_is_on_both_sides(group, settings):
    assert len(set(group)) == len(group)
    assert set(group) <= _names(TrainAgentConfig) & _names(settings)


def test_no_rl_field_of_the_config_is_left_out():
    """A config field named as an RLSettings field reaches it (lr by way of the model size)."""
    shared = _names(TrainAgentConfig) & _names(RLSettings)
    assert shared - {"lr"} == set(train_agent.RL_FIELDS)


CONFIGS = [
    dict(out="P", base="tiny:1m", tasks="T.jsonl"),
    dict(out="P", init="I", tasks="T.jsonl", algo="ppo", lr=3e-4, iterations=7, batch_tasks=3,
         group_size=5, kl_coef=0.0, kl_estimator="k1", clip_eps=0.3, ppo_epochs=2,
         mini_batches=2, warmup_steps=0, micro_batch_turns=4, entropy_coef=0.01,
         value_coef=0.7, value_lr=1e-2, value_detach=False, gamma=0.9, lam=0.8,
         outcome="return", temperature=0.7, invalid_penalty=0.1, checkpoint_every=3, seed=5,
         max_real_steps=99, max_steps_per_episode=6, action_interface="listed", think=True,
         history_budget_tokens=64, max_new_tokens=20, curriculum_every=2, lambda_=0.5,
         seeds_per_round=3, candidates=2, zero_variance_weight=0.5, env="dream:EM"),
    dict(out="P", base="tiny:1m", store="S", algo="sft", max_steps=12, epochs=1.5,
         batch_size=3, seed=2, lr=5e-3),
]


@pytest.mark.parametrize("values", CONFIGS)
@pytest.mark.parametrize("tiny", [True, False])
def test_settings_are_the_field_by_field_ones(values, tiny):
    c = TrainAgentConfig(**values)
    assert c.algo == "sft" or c.rl_settings(tiny) == RLSettings(
        algo=c.algo, iterations=c.iterations, batch_tasks=c.batch_tasks,
        group_size=c.group_size, lr=c.lr if c.lr is not None else (1e-4 if tiny else 1e-5),
        kl_coef=c.kl_coef, kl_estimator=c.kl_estimator, clip_eps=c.clip_eps,
        ppo_epochs=c.ppo_epochs, mini_batches=c.mini_batches,
        micro_batch_turns=c.micro_batch_turns, entropy_coef=c.entropy_coef,
        value_coef=c.value_coef, gamma=c.gamma, lam=c.lam, outcome=c.outcome,
        checkpoint_every=c.checkpoint_every, seed=c.seed, max_real_steps=c.max_real_steps,
        warmup_steps=c.warmup_steps, temperature=c.temperature,
        invalid_penalty=c.invalid_penalty, value_detach=c.value_detach, value_lr=c.value_lr)
    assert c.sft_settings(tiny) == SFTSettings(
        lr=c.lr if c.lr is not None else (1e-3 if tiny else 2e-4), batch_size=c.batch_size,
        epochs=c.epochs, max_steps=c.max_steps, seed=c.seed,
        eval_every=max(1, c.max_steps or 50), checkpoint_every=100)
    for enabled in (True, False):
        assert c.curriculum_settings(enabled) == CurriculumSettings(
            enabled=enabled, every=c.curriculum_every, lam=c.lambda_,
            seeds_per_round=c.seeds_per_round, candidates=c.candidates, algo=c.algo,
            outcome=c.outcome, seed=c.seed, zero_variance_weight=c.zero_variance_weight)
    saved = PolicySettings(think=True, history_budget_tokens=100, max_new_tokens=30,
                           made_by={"algo": "sft"})
    for base in (None, saved):
        b = base or PolicySettings()
        policy = c.policy_settings(base)
        assert policy == PolicySettings(
            think=b.think if c.think is None else c.think,
            history_budget_tokens=(b.history_budget_tokens if c.history_budget_tokens is None
                                   else c.history_budget_tokens),
            max_new_tokens=b.max_new_tokens if c.max_new_tokens is None else c.max_new_tokens,
            made_by={"algo": c.algo, "init": str(c.init) if c.init else None, "base": c.base,
                     "env": c.env, "seed": c.seed, "parent": b.made_by or None})
        assert c.rollout_settings(policy) == RolloutSettings(
            think=policy.think, history_budget_tokens=policy.history_budget_tokens,
            max_new_tokens=policy.max_new_tokens, temperature=c.temperature,
            max_turns=c.max_steps_per_episode, seed=c.seed,
            action_interface=c.action_interface)


def test_rl_settings_are_checked():
    from dreamgym_cli.errors import InputError

    with pytest.raises(InputError, match="outcome"):
        TrainAgentConfig(out="P", base="tiny:1m", tasks="T.jsonl", outcome="win").rl_settings(True)
