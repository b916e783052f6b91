"""Run by tests/test_scale_accelerate*.py, as one process (`python`) or under `accelerate launch`
with 2 gloo processes: the real SFT loop or the real RL update on a tiny model, with the same
global batches either way. Rank 0 writes what it measured as JSON to the path given.

    python tests/scale_train_script.py sft OUT.json [--checkpoints DIR] [--stop-after N] [--resume]
    python tests/scale_train_script.py rl OUT.json
    python tests/scale_train_script.py rl-episodes OUT.json --policy P0 --tasks T.parquet --algo ppo
    python tests/scale_train_script.py train-agent OUT.json --config C.json --stop-after N

rl-episodes: real TextWorld episodes of the policy (rolled out the same way in every process),
each rank keeping its share of the task draws, through the trainer's gather + `learn`.
train-agent: `stages.train_agent.run` of the TrainAgentConfig fields in C.json; rank 0's progress
callback raises after iteration N (a crash: the launcher then stops the other rank).
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import torch


def corpus() -> list[str]:
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 7)))
             for _ in range(300)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 20)))
            for _ in range(400)]


class Stop(Exception):
    """Ends the run after a given step (a crash the checkpoint must survive)."""


def weights_digest(model) -> list[float]:
    return [float(p.detach().double().sum()) for p in model.parameters()]


def run_sft(args, dist) -> dict:
    from dreamgym_cli.llm import sft
    from dreamgym_cli.llm.tiny import build_tiny

    texts = corpus()
    model, tokenizer = build_tiny("tiny:1m", texts, seed=0)
    examples = [sft.encode_pair(tokenizer, texts[i], texts[i + 1], 96) for i in range(0, 80, 2)]
    settings = sft.SFTSettings(lr=1e-3, batch_size=6, max_steps=6, warmup_steps=2, seed=1,
                               eval_every=3, checkpoint_every=2)

    def progress(step, total, point):
        if args.stop_after and step == args.stop_after:
            raise Stop()

    try:
        metrics = sft.train(model, tokenizer, examples, examples[:6], settings,
                            checkpoint_dir=args.checkpoints, resume=args.resume,
                            progress=progress, dist=dist)
    except Stop:
        return {"stopped": True}
    return {"curve": metrics["curve"], "weights": weights_digest(model)}


def run_rl(args, dist) -> dict:
    from dreamgym_cli.llm.tiny import build_tiny
    from dreamgym_cli.rl.rollout import Turn
    from dreamgym_cli.rl.learner import RLSettings
    from dreamgym_cli.rl.samples import Sample, reference_logprobs, score_turns
    from dreamgym_cli.rl.trainer import make_learner, update_policy

    model, tokenizer = build_tiny("tiny:1m", corpus(), seed=0)
    rng = random.Random(5)
    vocab = model.config.vocab_size
    turns = [Turn(state="", admissible=None,
                  prompt_ids=[rng.randrange(3, vocab) for _ in range(rng.randint(5, 30))],
                  token_ids=[rng.randrange(3, vocab) for _ in range(rng.randint(1, 12))],
                  logprobs=[], text="", action="", valid_format=True, in_admissible=None)
             for _ in range(11)]
    for t in turns:
        t.logprobs = [0.0] * len(t.token_ids)
    settings = RLSettings(lr=1e-3, kl_coef=0.05, mini_batches=2, micro_batch_turns=2,
                          ppo_epochs=2, warmup_steps=1)
    learner = make_learner(model, tokenizer, settings)
    old, _ = score_turns(model, turns, learner.pad_id, 4)
    for turn, lp in zip(turns, old):
        turn.logprobs = [x - 0.01 for x in lp]  # sampled under a slightly older policy
    samples = [Sample(t, rng.uniform(-1, 1)) for t in turns]
    for s, ref in zip(samples, reference_logprobs(learner, turns, 4)):
        s.ref_logprobs = ref
    steps = [update_policy(learner, samples, settings, random.Random(it), dist=dist)
             for it in range(2)]
    return {"steps": steps, "weights": weights_digest(model)}


def run_rl_episodes(args, dist) -> dict:
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.rl.policy import load_policy
    from dreamgym_cli.rl.rollout import RolloutSettings, run_rollouts
    from dreamgym_cli.rl.learner import RLSettings
    from dreamgym_cli.rl.trainer import learn, make_learner
    from dreamgym_cli.rl.value_head import load_value_head
    from dreamgym_cli.trajectories import read_tasks

    torch.manual_seed(0)
    model, tokenizer, _ = load_policy(args.policy)
    settings = RLSettings(algo=args.algo, batch_tasks=3, group_size=2, lr=1e-3, kl_coef=0.05,
                          mini_batches=2, micro_batch_turns=3, ppo_epochs=2, warmup_steps=1,
                          entropy_coef=0.01, outcome="return", invalid_penalty=0.1)
    head = load_value_head(model, None) if args.algo == "ppo" else None
    learner = make_learner(model, tokenizer, settings, head)
    tasks = read_tasks(args.tasks)[:3]
    with VectorEnv("textworld", workers=0, max_steps=3) as env:
        episodes = run_rollouts(env, learner.backend, tokenizer, tasks,
                                RolloutSettings(max_new_tokens=12, max_turns=3, seed=3),
                                group_size=settings.group_size)
    for k, e in enumerate(episodes):  # the tiny policy earns nothing: rewards that differ
        e.turns[-1].reward = float((e.group + k) % 3)  # within each group, the same on every rank
    if dist is not None:  # this rank's draws only, then the trainer's gather
        from dreamgym_cli.scale.distributed import gather_groups, rank_draws, wrap_learner

        mine = set(rank_draws(dist, len(tasks)))
        gathered = gather_groups(dist, [e for e in episodes if e.group in mine])
        content = lambda es: [(e.group, [t.token_ids for t in e.turns]) for e in es]  # noqa: E731
        assert content(gathered) == content(episodes)  # the 1-process batch, in its order
        episodes = gathered
        wrap_learner(dist, learner)
    steps = [learn(learner, episodes, settings, random.Random(it), dist) for it in range(2)]
    return {"steps": steps, "weights": weights_digest(learner.model),
            "head": None if head is None else weights_digest(head),
            "turns": sum(len(e.turns) for e in episodes)}


def run_train_agent(args, dist) -> dict:
    from dreamgym_cli.stages import train_agent

    config = train_agent.TrainAgentConfig(**json.loads(args.config.read_text()))

    def progress(iteration, total, metrics):
        if iteration == args.stop_after:
            raise Stop()

    try:
        return train_agent.run(config, progress=progress)
    except Stop:  # rank 0 only (it alone has a progress callback): die as a crashed rank would
        args.out.write_text(json.dumps({"stopped": True, "world": dist.world if dist else 1}))
        os._exit(3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("sft", "rl", "rl-episodes", "train-agent"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--checkpoints", type=Path)
    parser.add_argument("--stop-after", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--policy", type=Path)
    parser.add_argument("--tasks", type=Path)
    parser.add_argument("--algo", default="grpo")
    parser.add_argument("--config", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from dreamgym_cli.scale.distributed import current

    dist = current()
    run = {"sft": run_sft, "rl": run_rl, "rl-episodes": run_rl_episodes,
           "train-agent": run_train_agent}[args.what]
    result = run(args, dist)
    if dist is None or dist.is_main:
        args.out.write_text(json.dumps({**result, "world": 1 if dist is None else dist.world}))
    if dist is not None:
        dist.wait()


if __name__ == "__main__":
    main()
