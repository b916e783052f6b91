"""Run by tests/test_scale_accelerate.py, as one process (`python`) or under `accelerate launch`
with 2 gloo processes: the real SFT loop or the real RL update on a tiny model, with the same
global batches either way. Rank 0 writes what it measured as JSON to the path given.

    python tests/scale_train_script.py sft OUT.json [--checkpoints DIR] [--stop-after N] [--resume]
    python tests/scale_train_script.py rl OUT.json
"""

from __future__ import annotations

import argparse
import json
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
    from dreamgym_cli.rl.trainer import (RLSettings, Sample, make_learner, reference_logprobs,
                                         score_turns, update_policy)

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("sft", "rl"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--checkpoints", type=Path)
    parser.add_argument("--stop-after", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from dreamgym_cli.scale.distributed import current

    dist = current()
    result = (run_sft if args.what == "sft" else run_rl)(args, dist)
    if dist is None or dist.is_main:
        args.out.write_text(json.dumps({**result, "world": 1 if dist is None else dist.world}))
    if dist is not None:
        dist.wait()


if __name__ == "__main__":
    main()
