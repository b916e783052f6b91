"""train-agent's `grpo` and `ppo`: wire the env, the policy and the store to `rl.trainer.train`.

Under `accelerate launch` every process opens its own env (`--workers` processes each) and its
copy of the policy, and rolls out its share of each iteration's task draws; rank 0 alone keeps
the curriculum, runs the validation, adds the episodes of every rank to the store (once) and
writes the policy (`check_launch` refuses what cannot run so).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dreamgym_cli.errors import InputError
from dreamgym_cli.rl.task_pool import read_task_pool, tasks_env


def corpus_from_env(env, tasks) -> list[str]:
    """Texts a tiny base's tokenizer learns from when there is no store: the first prompts."""
    from dreamgym_cli.rl.agent_prompt import answer_text, build_agent_prompt

    texts = []
    for task, obs in zip(tasks, env.reset_batch(list(tasks))):
        prompt = build_agent_prompt(task.instruction, [], obs.text, obs.admissible, think=True,
                                    history_budget_tokens=0, count_tokens=len)
        texts.append(prompt + " ".join(answer_text(a, "", True) for a in obs.admissible or []))
    return texts


def check_launch(config) -> None:
    """grpo/ppo under `accelerate launch`: an InputError for what cannot run correctly there."""
    from dreamgym_cli.scale import distributed

    if config.ray:
        raise InputError("--ray and `accelerate launch` both spread the rollouts: under accelerate "
                         "each process rolls out its share of the task draws in its own env "
                         "(--workers N processes each); drop --ray, or use --ray in one process",
                         field="ray")
    dist = distributed.current()
    if not dist.data_parallel:
        raise InputError(f"grpo/ppo run under DDP only (every process generates its rollouts "
                         f"with the whole policy), and this launch's accelerate config shards "
                         f"the model ({dist.kind}); launch with --multi_gpu and no FSDP/DeepSpeed "
                         f"config", field="algo")


def train_rl(config, out_dir: Path | None, progress) -> tuple[dict, dict]:
    """Train into out_dir; (manifest metrics, manifest extra). Under `accelerate launch` the
    ranks other than 0 train with out_dir None and write nothing."""
    import torch

    from dreamgym_cli.rl.policy import save_policy
    from dreamgym_cli.envs.registry import is_dream_name
    from dreamgym_cli.rl.rollout import open_batch_env
    from dreamgym_cli.rl.trainer import make_learner, train
    from dreamgym_cli.rl.value_head import load_value_head
    from dreamgym_cli.rl.start import checkpoint_dir, load_start_model, remove_checkpoints
    from dreamgym_cli.scale import distributed
    from dreamgym_cli.stages.train_agent_curriculum import (curriculum_report,
                                                            curriculum_status, make_sampler)

    pool = read_task_pool(config.tasks)
    env_name = config.env or tasks_env(pool, config.tasks)
    dream = is_dream_name(env_name)
    if dream and config.max_real_steps is not None:
        raise InputError("--max-real-steps budgets a real env; the dream env takes none",
                         field="max_real_steps")
    if config.max_real_steps is not None and \
            config.max_real_steps < config.group_size * config.max_steps_per_episode:
        raise InputError(f"a budget of {config.max_real_steps} real steps does not hold one group "
                         f"of whole episodes ({config.group_size} × "
                         f"{config.max_steps_per_episode} turns); raise it or lower "
                         "--group-size / --max-steps-per-episode", field="max_real_steps")
    dist = distributed.current()
    main = dist is None or dist.is_main
    store = _open_store(config.store)
    env = open_batch_env(env_name, max_steps=config.max_steps_per_episode,
                         workers=config.workers, store=store, seed=config.seed,
                         policy_name=config.out.name,
                         retrieve_synthetic=config.retrieve_synthetic,
                         ray=config.ray)
    validation = sync = None
    try:
        torch.manual_seed(config.seed)
        model, tokenizer, settings, tiny = load_start_model(
            config, lambda _settings: corpus_from_env(env, pool[:16]))
        model.to(dist.device if dist is not None else  # a GPU when there is one
                 "cuda" if torch.cuda.is_available() else "cpu")
        value_head = load_value_head(model, config.init) if config.algo == "ppo" else None
        rl = config.rl_settings(tiny)
        learner = make_learner(model, tokenizer, rl, value_head)
        if config.rollout_server:
            rl, sync = _on_server(config, learner, rl)
        rollout = config.rollout_settings(settings)
        enrich_store = store if store is not None else _env_store(env)
        on_episodes = _enricher(enrich_store, "synthetic" if dream else "real",
                                config.out.name) if config.enrich and main else None
        run_dir = checkpoint_dir(config.out)
        sampler = make_sampler(config, env, pool, dream) if main else None
        validation = _validator(config, learner, rollout) if main else None
        summary = train(learner, env, pool, rl, rollout, run_dir=run_dir, resume=config.resume,
                        sampler=sampler, on_episodes=on_episodes, real_env=not dream,
                        progress=progress, evaluate=validation, eval_every=config.eval_every,
                        dist=dist, sync=None if sync is None else sync.push)
    finally:
        env.close()
        if sync is not None:
            learner.backend.close()
            sync.close()
        if validation is not None:
            validation.close()
    if out_dir is None:  # a rank other than 0: rank 0 publishes
        return {}, {}
    save_policy(model, tokenizer, out_dir, settings, value_head)
    curriculum_metrics, curriculum_extra = curriculum_report(
        sampler, out_dir, curriculum_status(config, dream))
    shutil.copyfile(run_dir / "metrics.jsonl", out_dir / "metrics.jsonl")
    remove_checkpoints(config.out)
    metrics = {k: v for k, v in (summary["last"] or {}).items() if k != "real_steps_used"}
    metrics.update({"iterations_run": summary["iterations_run"],
                    "real_steps_used": summary["real_steps_used"], "env": env_name,
                    "enriched_store": str(enrich_store.path) if on_episodes and enrich_store
                    else None, **curriculum_metrics})
    extra = {"first_iteration": summary["first"], **curriculum_extra,
             "processes": 1 if dist is None else dist.world}
    if dist is not None:  # every rank's weights at the end (equal, or the run failed)
        extra["weights_digests"] = summary["weights_digests"]
    return metrics, extra


def _on_server(config, learner, rl):
    """Rollouts generated by the vLLM server at --rollout-server: the learner's backend becomes
    the server, the weights are pushed to it (rank 0) and the old log-probs are the trainer's own
    (the server's are compared with them: rollout/logprob_gap_*). (RL settings, the sync)."""
    import dataclasses

    from dreamgym_cli.llm.generate import open_backend
    from dreamgym_cli.llm.weight_sync import WeightSync

    sync_dir = config.rollout_sync_dir or config.out.parent / f"{config.out.name}.rollout-weights"
    sync = WeightSync(config.rollout_server, sync_dir)
    sync.check()
    learner.backend = open_backend("openai", base_url=config.rollout_server)
    return dataclasses.replace(rl, rescore_logprobs=True), sync


class _Validator:
    """Greedy success of the current policy on fixed validation games in their real env."""

    def __init__(self, config, learner, rollout):
        import dataclasses

        from dreamgym_cli.rl.session import PolicySession

        self.tasks = read_task_pool(config.eval_tasks)
        name = tasks_env(self.tasks, config.eval_tasks)
        turns = config.eval_turns or config.max_steps_per_episode
        self.session = PolicySession.open(
            name, learner.backend, learner.tokenizer,
            dataclasses.replace(rollout, temperature=0.0, max_turns=turns),
            env_options={"max_steps": turns, "workers": config.workers, "ray": config.ray})

    def __call__(self) -> dict[str, float]:
        episodes = self.session.run(self.tasks)
        n = max(len(episodes), 1)
        judged = [t for e in episodes for t in e.turns if t.in_admissible is not None]
        return {"eval/success_rate": sum(e.success for e in episodes) / n,
                "eval/return_mean": sum(e.total_return for e in episodes) / n,
                "eval/invalid_action_rate": (sum(not t.in_admissible for t in judged) /
                                             len(judged)) if judged else 0.0,
                "eval/episodes": len(episodes)}

    def close(self) -> None:
        self.session.close()


def _validator(config, learner, rollout) -> _Validator | None:
    return None if config.eval_tasks is None else _Validator(config, learner, rollout)


def _env_store(env):
    """The replay store a dream env retrieves from; None for envs without one (real, Ray)."""
    return env.replay_store() if hasattr(env, "replay_store") else None


def _open_store(path: Path | None):
    if path is None:
        return None
    from dreamgym_cli.store import ReplayStore

    return ReplayStore.open(path)


def _enricher(store, source: str, policy: str):
    """on_episodes hook: the iteration's episodes into the store (the co-evolving buffer)."""
    if store is None:
        return None
    from dreamgym_cli.rl.rollout import append_to_store, episode_records

    def enrich(iteration: int, episodes) -> dict[str, Any]:
        added = append_to_store(store, episode_records(episodes, source, policy))
        return {"store/episodes_added": added}

    return enrich
