"""From an iteration's episodes to the samples the update trains on.

Scoring: the log-probs (and PPO values) of turns' answer tokens under a model, for the KL
reference and the critic. Advantages: GRPO gives every turn its episode's group-normalised
outcome; PPO runs GAE over the turn rewards with the value head's estimates, bootstrapped where
a step limit cut the episode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from dreamgym_cli.rl import algorithms as alg
from dreamgym_cli.rl.batching import collate_turns, forward_turns, model_device
from dreamgym_cli.rl.learner import Learner, RLSettings
from dreamgym_cli.rl.rollout import EpisodeRollout, Turn


# ---- scoring ---------------------------------------------------------------------------------


@torch.no_grad()
def score_turns(model, turns: Sequence[Turn], pad_id: int, micro: int, *, value_head=None,
                temperature: float = 1.0) -> tuple[list[list[float]], list[float] | None]:
    """Log-probs of each turn's answer tokens under `model` (and its values, with a head)."""
    logprobs, values = [], [] if value_head is not None else None
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(turns), micro):
            chunk = turns[start:start + micro]
            batch = collate_turns(chunk, pad_id, model_device(model))
            out = forward_turns(model, batch, value_head=value_head, temperature=temperature)
            for i in range(len(chunk)):
                logprobs.append(out.logprobs[i][batch.answer_mask[i]].tolist())
            if values is not None:
                values.extend(out.values.tolist())
    finally:
        model.train(was_training)
    return logprobs, values


def reference_logprobs(learner: Learner, turns: Sequence[Turn], micro: int,
                       temperature: float = 1.0, score=score_turns) -> list[list[float]]:
    """score: `score_turns`, or one with its signature (e.g. split over ranks)."""
    if learner.reference is not None:
        return score(learner.reference, turns, learner.pad_id, micro, temperature=temperature)[0]
    with learner.model.disable_adapter():  # LoRA: the base without the adapter is the reference
        return score(learner.model, turns, learner.pad_id, micro, temperature=temperature)[0]


def rescore_rollouts(learner: Learner, episodes: list[EpisodeRollout], micro: int,
                     temperature: float = 1.0, score=score_turns) -> dict[str, float]:
    """Replace every turn's log-probs (the generating engine's) with the trainer's own forward
    pass, as verl recomputes old log-probs: the ratio's denominator is then this model's, and a
    server that generated with other weights (a missed sync) or other numerics (bf16 kernels)
    shows as a gap. Metrics: the mean and largest |engine - trainer| per answer token."""
    turns = [t for e in episodes for t in e.turns if t.token_ids]
    if not turns:
        return {}
    mine = score(learner.model, turns, learner.pad_id, micro, temperature=temperature)[0]
    gaps = []
    for turn, ours in zip(turns, mine):
        gaps.extend(abs(a - b) for a, b in zip(turn.logprobs, ours))
        turn.logprobs = list(ours)
    return {"rollout/logprob_gap_mean": sum(gaps) / max(len(gaps), 1),
            "rollout/logprob_gap_max": max(gaps, default=0.0)}


# ---- advantages ------------------------------------------------------------------------------


@dataclasses.dataclass
class Sample:
    """One turn to train on, with everything its loss needs."""

    turn: Turn
    advantage: float
    ref_logprobs: list[float] | None = None
    old_value: float = 0.0
    value_target: float = 0.0


def penalised(value: float, turns: Sequence[Turn], penalty: float) -> float:
    """`value` minus `penalty` for each off-list or malformed action among `turns`."""
    if penalty == 0:
        return value
    return value - penalty * sum(bad_action(t) for t in turns)


def bad_action(turn: Turn) -> bool:
    """An answer without action tags, or an action the env did not list."""
    return (not turn.valid_format) or turn.in_admissible is False


def grpo_samples(episodes: list[EpisodeRollout], outcome: str,
                 invalid_penalty: float = 0.0) -> list[Sample]:
    """Each turn carries its episode's group-normalised outcome (GRPO)."""
    rewards = torch.tensor([penalised(float(e.success) if outcome == "success"
                                      else e.total_return, e.turns, invalid_penalty)
                            for e in episodes])
    adv = alg.grpo_advantages(rewards, [e.group for e in episodes]).tolist()
    return [Sample(t, a) for e, a in zip(episodes, adv) for t in e.turns]


def bootstrap_values(learner: Learner, episodes: list[EpisodeRollout], micro: int,
                     score=score_turns) -> list[float]:
    """V(s_N) after each episode's last turn: the critic's estimate where a step limit or budget
    cut the episode (the game was not over), 0 where the env ended it."""
    cut = [i for i, e in enumerate(episodes) if e.truncated and e.final_prompt_ids]
    out = [0.0] * len(episodes)
    if cut:
        probes = [Turn(state="", admissible=None, prompt_ids=list(episodes[i].final_prompt_ids),
                       token_ids=[], logprobs=[], text="", action="", valid_format=True,
                       in_admissible=None) for i in cut]
        _, values = score(learner.model, probes, learner.pad_id, micro,
                          value_head=learner.value_head)
        for i, v in zip(cut, values or []):
            out[i] = float(v)
    return out


def ppo_samples(learner: Learner, episodes: list[EpisodeRollout], settings: RLSettings,
                score=score_turns) -> list[Sample]:
    """GAE over each episode's turn rewards with the value head's estimates (whitened over all
    the episodes), bootstrapped with V(s_N) where the episode was cut rather than ended."""
    kept = [e for e in episodes if e.turns]
    turns = [t for e in kept for t in e.turns]
    _, values = score(learner.model, turns, learner.pad_id, settings.micro_batch_turns,
                      value_head=learner.value_head, temperature=settings.temperature)
    width = max(len(e.turns) for e in kept)
    rewards = torch.zeros(len(kept), width)
    old = torch.zeros(len(kept), width)
    mask = torch.zeros(len(kept), width, dtype=torch.bool)
    k = 0
    for i, e in enumerate(kept):
        n = len(e.turns)
        rewards[i, :n] = torch.tensor([penalised(t.reward, [t], settings.invalid_penalty)
                                       for t in e.turns])
        old[i, :n] = torch.tensor(values[k:k + n])
        mask[i, :n] = True
        k += n
    last = torch.tensor(bootstrap_values(learner, kept, settings.micro_batch_turns,
                                         score))  # [E]
    adv, returns = alg.gae(rewards, old, mask, settings.gamma, settings.lam,
                           last_values=last)  # [E, N] each
    adv = alg.masked_whiten(adv, mask) if mask.sum() > 1 else adv
    return [Sample(t, float(adv[i, j]), old_value=float(old[i, j]),
                   value_target=float(returns[i, j]))
            for i, e in enumerate(kept) for j, t in enumerate(e.turns)]
