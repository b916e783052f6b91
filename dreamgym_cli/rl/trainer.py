"""GRPO and PPO training loops, built from parts (rollout → advantages → loss → optimizer step).

    learner = make_learner(model, tokenizer, settings, value_head)
    summary = train(learner, env, pool, settings, rollout_settings, run_dir=..., resume=False)

The learner and its settings are in `rl/learner.py`; scoring and advantages (the samples the
update trains on) in `rl/samples.py`.

Per iteration: sample tasks (`sampler(n, rng)`: uniform over the pool by default; the curriculum
passes its own), run `group_size` episodes of each in the env, compute advantages (GRPO: the
group-normalised outcome of each episode on every answer token of every turn; PPO: GAE over the
turn rewards with a value head), then `ppo_epochs` passes of clipped-ratio updates with a KL
penalty to the reference policy (the initial weights: a frozen copy for full fine-tuning, the base
with adapters disabled for LoRA). Old log-probs are the rollout's sampled ones. Metrics go to
`metrics.jsonl` (and TensorBoard when installed); a checkpoint every `checkpoint_every`
iterations makes `resume=True` continue where a run stopped.

Under `accelerate launch` (`dist`): each process rolls out its share of the draws, all of them
learn from all the episodes through DDP, and rank 0 alone logs and checkpoints (see `train`).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from dreamgym_cli.rl import algorithms as alg
from dreamgym_cli.rl.batching import collate_turns, forward_turns, model_device, per_token
from dreamgym_cli.rl.learner import Learner, RLSettings
from dreamgym_cli.rl.rollout import EpisodeRollout, RolloutSettings, rollout_metrics, run_rollouts
from dreamgym_cli.rl.samples import (Sample, grpo_samples, ppo_samples, reference_logprobs,
                                     rescore_rollouts, score_turns)
from dreamgym_cli.schema import Task


# ---- the learner -------------------------------------------------------------------------------


def _is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "get_base_model")


def make_learner(model, tokenizer, settings: RLSettings, value_head=None) -> Learner:
    """A learner for `model` as it is now (its current weights become the KL reference)."""
    from dreamgym_cli.llm.generate import open_backend

    if value_head is not None:  # the critic lives beside the policy (a GPU when it is on one)
        value_head = value_head.to(model_device(model))
    reference = None
    if settings.kl_coef > 0 and not _is_peft(model):
        reference = copy.deepcopy(model).eval()
        for p in reference.parameters():
            p.requires_grad_(False)
    learner = Learner(model, tokenizer, open_backend("transformers", model=model,
                                                     tokenizer=tokenizer),
                      optimizer=None, reference=reference, value_head=value_head)  # type: ignore
    groups = [{"params": learner.policy_parameters(), "lr": settings.lr, "base_lr": settings.lr}]
    if value_head is not None:  # the critic learns at its own rate (it starts from zero)
        groups.append({"params": list(value_head.parameters()), "lr": settings.value_lr,
                       "base_lr": settings.value_lr})
    learner.optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    return learner


def warmup_factor(updates: int, warmup_steps: int) -> float:
    """The lr multiplier of optimizer step `updates` + 1: linear from 1/warmup up to 1.

    Adam's first steps move every weight by about lr·sign(g) whatever the gradient's size, so a
    fresh optimizer at full lr takes a full-size step along a gradient estimated from a handful
    of episodes; the warm-up lets its moment estimates settle first.
    """
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (updates + 1) / warmup_steps)


# ---- the update --------------------------------------------------------------------------------


def _micro_loss(learner: Learner, chunk: list[Sample], settings: RLSettings,
                weight: float, wrapped: tuple | None = None) -> dict[str, float]:
    """Backward of one micro-batch's share of the mini-batch loss; its metrics (unweighted).
    wrapped: (model, value head) wrappers (DDP) to run the forward through."""
    model, head = wrapped or (learner.model, learner.value_head)
    device = model_device(learner.model)
    batch = collate_turns([s.turn for s in chunk], learner.pad_id, device)
    out = forward_turns(model, batch, value_head=head,
                        entropy=settings.entropy_coef > 0, temperature=settings.temperature,
                        detach_value=settings.value_detach)
    mask = batch.answer_mask
    adv = alg.broadcast_to_tokens(torch.tensor([s.advantage for s in chunk], device=device), mask)
    policy_loss, clip_frac, approx_kl = alg.policy_loss_clipped(
        out.logprobs, batch.old_logprobs, adv, mask, settings.clip_eps,
        loss_agg=settings.loss_agg)
    loss = policy_loss
    metrics = {"train/policy_loss": policy_loss.item(), "train/clip_fraction": clip_frac.item(),
               "train/approx_kl": approx_kl.item()}
    if chunk[0].ref_logprobs is not None:
        ref = per_token(batch, [s.ref_logprobs for s in chunk])
        kl = alg.aggregate_loss(alg.kl_penalty(out.logprobs, ref, settings.kl_estimator), mask,
                                settings.loss_agg)
        loss = loss + settings.kl_coef * kl
        metrics["train/kl"] = kl.item()
    if out.entropy is not None:
        entropy = alg.aggregate_loss(out.entropy, mask, settings.loss_agg)
        loss = loss - settings.entropy_coef * entropy
        metrics["train/entropy"] = entropy.item()
    if out.values is not None:
        turn_mask = torch.ones(len(chunk), 1, dtype=torch.bool, device=device)
        v_loss, v_clip = alg.value_loss_clipped(
            out.values[:, None], torch.tensor([[s.old_value] for s in chunk], device=device),
            torch.tensor([[s.value_target] for s in chunk], device=device), turn_mask,
            settings.value_clip)
        loss = loss + settings.value_coef * v_loss
        metrics.update({"train/value_loss": v_loss.item(), "train/value_clip_fraction":
                        v_clip.item()})
    metrics["train/loss"] = loss.item()
    (loss * weight).backward()
    return metrics


def update_policy(learner: Learner, samples: list[Sample], settings: RLSettings,
                  rng: random.Random, dist=None) -> dict[str, float]:
    """`ppo_epochs` passes over the samples in `mini_batches` optimizer steps each.

    dist: a `scale.distributed.Dist` under `accelerate launch`: every rank holds the same
    samples and runs its share of each mini-batch's micro-batches through DDP (the same update
    and metrics as one process)."""
    if not samples:
        return {}
    if dist is not None:
        from dreamgym_cli.scale.distributed import micro_batches, reduce_metrics, wrap_learner

        wrapped = wrap_learner(dist, learner)
    learner.model.train()
    totals: dict[str, list[tuple[float, float]]] = {}
    params = learner.parameters()
    for _ in range(settings.ppo_epochs):
        order = list(range(len(samples)))
        rng.shuffle(order)
        size = -(-len(order) // settings.mini_batches)
        for start in range(0, len(order), size):
            mini = [samples[i] for i in order[start:start + size]]
            tokens = sum(len(s.turn.token_ids) for s in mini)
            learner.optimizer.zero_grad(set_to_none=True)
            if dist is not None:  # this rank's micro-batches; DDP sums them over ranks
                for chunk, real in micro_batches(dist, mini, settings.micro_batch_turns):
                    weight = sum(len(s.turn.token_ids) for s in chunk) / max(tokens, 1) * real
                    for k, v in _micro_loss(learner, chunk, settings, weight * dist.world,
                                            wrapped).items():
                        totals.setdefault(k, []).append((v, weight))
            else:
                for m in range(0, len(mini), settings.micro_batch_turns):
                    chunk = mini[m:m + settings.micro_batch_turns]
                    weight = sum(len(s.turn.token_ids) for s in chunk) / max(tokens, 1)
                    for k, v in _micro_loss(learner, chunk, settings, weight).items():
                        totals.setdefault(k, []).append((v, weight))
            norm = torch.nn.utils.clip_grad_norm_(params, settings.grad_clip or float("inf"))
            totals.setdefault("train/grad_norm", []).append((float(norm), 1.0))
            factor = warmup_factor(learner.updates, settings.warmup_steps)
            for group in learner.optimizer.param_groups:
                group["lr"] = group.get("base_lr", group["lr"]) * factor
            totals.setdefault("train/lr", []).append((learner.optimizer.param_groups[0]["lr"],
                                                      1.0))
            learner.optimizer.step()
            learner.updates += 1
    learner.model.eval()
    if dist is not None:
        totals = reduce_metrics(dist, totals)
    return {k: sum(v * w for v, w in pairs) / max(sum(w for _, w in pairs), 1e-12)
            for k, pairs in totals.items()}


# ---- the loop ----------------------------------------------------------------------------------


Sampler = Callable[[int, random.Random], list[Task]]


def whole_groups(steps_left: int, settings: RLSettings, max_turns: int | None) -> int:
    """How many task draws (groups of `group_size` episodes) fit in a real-step budget when
    every episode may run to `max_turns`: a budget is spent on whole episodes, never on the
    first turns of many (without a turn limit the rollout's own cut is the only guard)."""
    if max_turns is None:
        return settings.batch_tasks if steps_left > 0 else 0
    return max(0, steps_left // (settings.group_size * max_turns))


def uniform_sampler(pool: Sequence[Task]) -> Sampler:
    """n tasks uniformly from the pool: without replacement while the pool lasts."""
    pool = list(pool)

    def sample(n: int, rng: random.Random) -> list[Task]:
        return rng.sample(pool, n) if n <= len(pool) else [rng.choice(pool) for _ in range(n)]

    return sample


def train(learner: Learner, env, pool: Sequence[Task], settings: RLSettings,
          rollout_settings: RolloutSettings, *, run_dir: Path, resume: bool = False,
          sampler: Sampler | None = None, on_episodes=None, real_env: bool = False,
          progress: Callable[[int, int, dict], None] | None = None,
          evaluate: Callable[[], dict] | None = None, eval_every: int = 0,
          dist=None, sync: Callable[[Any, int], dict] | None = None) -> dict[str, Any]:
    """Run the iterations; metrics per iteration in run_dir/metrics.jsonl. A summary dict.

    on_episodes(iteration, episodes) -> dict: called after each rollout (replay enrichment).
    A sampler with an `observe(episodes)` method is told each iteration's episodes and may return
    metrics for the iteration (curriculum); one with `save(run_dir)` / `resume(run_dir, start)`
    keeps its state with the checkpoints.
    real_env: count env steps against `settings.max_real_steps`.
    evaluate() -> dict: a measurement of the current policy (e.g. greedy success on fixed
    validation games), logged before the first iteration (as iteration 0), every `eval_every`
    iterations and after the last; its env steps are not training data and not in the budget.
    dist: a `scale.distributed.Dist` under `accelerate launch`. Each rank rolls out its share of
    every iteration's task draws and all of them learn from all the episodes (see `_rollout`,
    `learn`); the budget counts every rank's steps. Rank 0 alone draws the tasks (the sampler
    and its observe/save/resume), calls on_episodes, evaluate and progress, logs and writes the
    checkpoints; all ranks read the checkpoint on resume. The ranks' weights are compared at the
    end (`weights_digests` in the summary); ranks that drifted apart are an error.
    sync(model, version) -> dict: pushes the policy's weights to the engine that generates the
    rollouts (`llm.weight_sync.WeightSync.push`), before the first iteration and after every
    update; every rank passes it, rank 0 alone calls it and the others wait at the same barrier;
    its metrics go into the iteration's line.
    """
    from dreamgym_cli.rl.checkpoint import MetricsLog, load_checkpoint, save_checkpoint

    main = dist is None or dist.is_main
    if not main:
        on_episodes = evaluate = progress = None
    sampler = sampler or uniform_sampler(pool)
    start, used = load_checkpoint(run_dir, learner) if resume else (0, 0)
    if resume and main and callable(getattr(sampler, "resume", None)):
        sampler.resume(run_dir, start)  # a stateful sampler (curriculum) back to the checkpoint
    if dist is not None:
        from dreamgym_cli.scale.distributed import wrap_learner

        wrap_learner(dist, learner)  # DDP starts every rank from rank 0's weights
    log = MetricsLog(run_dir / "metrics.jsonl", keep_until=start) if main else None
    write = log.write if log is not None else (lambda metrics: None)
    budget = settings.max_real_steps if real_env else None
    first, last = None, {}
    if sync is not None:
        _push(sync, learner, start, dist)
    if evaluate is not None and start == 0:
        write({"iteration": 0, "train/updates": 0, "real_steps_used": 0, **evaluate()})
    try:
        for it in range(start, settings.iterations):
            if budget is not None and whole_groups(budget - used, settings,
                                                   rollout_settings.max_turns) < 1:
                break  # not even one whole group of episodes fits in what is left
            metrics = _iteration(learner, env, sampler, settings, rollout_settings, it,
                                 None if budget is None else budget - used, on_episodes, dist)
            used += metrics["rollout/turns"] if real_env else 0
            if sync is not None:
                metrics.update(_push(sync, learner, it + 1, dist))
            metrics.update({"iteration": it + 1, "real_steps_used": used})
            if evaluate is not None and eval_every and ((it + 1) % eval_every == 0 or
                                                        it + 1 == settings.iterations):
                metrics.update(evaluate())
            write(metrics)
            first = first or metrics
            last = metrics
            if main and settings.checkpoint_every and (it + 1) % settings.checkpoint_every == 0:
                save_checkpoint(run_dir, learner, it + 1, used)
                if callable(getattr(sampler, "save", None)):
                    sampler.save(run_dir)
            if progress is not None:
                progress(it + 1, settings.iterations, metrics)
        if evaluate is not None and last and not any(k.startswith("eval/") for k in last):
            final = evaluate()  # a budget ended the run between two measurements
            write({"iteration": last["iteration"], "train/updates": learner.updates,
                   "real_steps_used": used, **final})
            last = {**last, **final}
    finally:
        if log is not None:
            log.close()
    # iterations trained in this call (validation-only lines are logged too: not log.count)
    ran = int(last.get("iteration", start)) - start if last else 0
    summary = {"iterations_run": ran, "real_steps_used": used, "first": first, "last": last}
    if dist is not None:
        from dreamgym_cli.scale.distributed import same_weights

        summary["weights_digests"] = same_weights(dist, learner.parameters())
    return summary


def _push(sync, learner: Learner, version: int, dist) -> dict[str, Any]:
    """Rank 0 pushes the weights (all ranks hold the same ones); every rank waits for it."""
    metrics = sync(learner.model, version) if dist is None or dist.is_main else {}
    if dist is not None:
        dist.wait()
    return metrics or {}


def _iteration(learner: Learner, env, sampler: Sampler, settings: RLSettings,
               rollout_settings: RolloutSettings, it: int, steps_left: int | None,
               on_episodes, dist=None) -> dict[str, Any]:
    rng = random.Random(settings.seed * 1_000_003 + it)  # stateless per iteration: resumable
    torch.manual_seed(settings.seed * 1_000_003 + it)
    main = dist is None or dist.is_main
    t0 = time.perf_counter()
    draws = settings.batch_tasks if steps_left is None else \
        min(settings.batch_tasks, whole_groups(steps_left, settings, rollout_settings.max_turns))
    episodes = _rollout(learner, env, sampler, settings, rollout_settings, it, draws, steps_left,
                        rng, dist)
    metrics: dict[str, Any] = rollout_metrics(episodes)
    if settings.rescore_logprobs:
        metrics.update(rescore_rollouts(learner, episodes, settings.micro_batch_turns,
                                        settings.temperature, _score(dist)))
    observe = getattr(sampler, "observe", None)
    if callable(observe) and main:
        metrics.update(observe(episodes) or {})  # the curriculum's metrics, when it has any
    if on_episodes is not None:
        metrics.update(on_episodes(it, episodes) or {})
    counts = getattr(env, "metrics", None)  # the dream env's running counts (steps, cache)
    if isinstance(counts, dict):
        metrics.update(counts if dist is None else dist.sum_counts(counts))
    t1 = time.perf_counter()
    metrics.update(learn(learner, episodes, settings, rng, dist))
    metrics.update({"time/rollout_s": round(t1 - t0, 3),
                    "time/train_s": round(time.perf_counter() - t1, 3)})
    return metrics


def _rollout(learner: Learner, env, sampler: Sampler, settings: RLSettings,
             rollout_settings: RolloutSettings, it: int, draws: int, steps_left: int | None,
             rng: random.Random, dist) -> list[EpisodeRollout]:
    """The iteration's episodes, `group_size` per task draw, in draw order.

    Under `dist`: rank 0 draws the tasks and hands them on with its rng state (the update's
    shuffle goes on from it, as in one process); rank r rolls out draws r, r + W, ... with its
    share of the step budget, sampling seeded by (seed, iteration, r); every rank then holds all
    the episodes, each `group` its global draw index. One process is the case W = 1, r = 0."""
    if dist is None:
        tasks = sampler(draws, rng)
        return run_rollouts(env, learner.backend, learner.tokenizer, tasks, rollout_settings,
                            group_size=settings.group_size, call=it, max_env_steps=steps_left)
    from dreamgym_cli.scale.distributed import from_main, gather_groups, rank_draws

    tasks, state = from_main(dist, lambda: (sampler(draws, rng), rng.getstate()))
    rng.setstate(state)
    mine = rank_draws(dist, draws)
    share = None if steps_left is None else steps_left * len(mine) // max(draws, 1)
    episodes = run_rollouts(env, learner.backend, learner.tokenizer, [tasks[g] for g in mine],
                            rollout_settings, group_size=settings.group_size,
                            call=it * dist.world + dist.rank, max_env_steps=share)
    for e in episodes:
        e.group = mine[e.group]
    return gather_groups(dist, episodes)


def _score(dist):
    """`score_turns`, split over the ranks under `accelerate launch`."""
    if dist is None:
        return score_turns
    from dreamgym_cli.scale.distributed import sharded

    return sharded(dist, score_turns)


def learn(learner: Learner, episodes: list[EpisodeRollout], settings: RLSettings,
          rng: random.Random, dist=None) -> dict[str, float]:
    """Advantages, reference log-probs and the policy update from one iteration's episodes.

    dist: under `accelerate launch` every rank passes all the episodes, in draw order (see
    `_rollout`); the reference and value scoring is split over the ranks and the update is the
    DDP one of `update_policy`, so the result is the 1-process one for the same episodes."""
    score = _score(dist)
    samples = (ppo_samples(learner, episodes, settings, score) if settings.algo == "ppo"
               else grpo_samples(episodes, settings.outcome, settings.invalid_penalty))
    metrics = {"train/advantage_abs_mean": (sum(abs(s.advantage) for s in samples) /
                                            max(len(samples), 1))}
    if settings.kl_coef > 0 and samples:
        refs = reference_logprobs(learner, [s.turn for s in samples], settings.micro_batch_turns,
                                  settings.temperature, score)
        for s, r in zip(samples, refs):
            s.ref_logprobs = r
    metrics.update(update_policy(learner, samples, settings, rng, dist))
    metrics["train/updates"] = learner.updates
    return metrics
