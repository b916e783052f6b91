"""Our GRPO step (rollout + update) against TRL's `GRPOTrainer` step, same model and workload.

Workload, identical on both sides: a tiny model (`tiny:1m`, `tiny:10m`) built from the same texts
and seed; 8 prompts × 4 completions × up to 128 new tokens at temperature 1; the same reward (the
share of vowels in the completion); one optimizer step per batch; no KL term (TRL's default
beta = 0, so no reference model on either side); fp32, one process, no vLLM; CPU unless
`--device cuda`.
Reported: completions per second of a full step (generation + reward + advantages + update),
median over the timed steps after one warm-up step, in `--rounds` rounds that swap which side
runs first. No assertions: it prints the figures.

    .venv/bin/python bench/grpo_vs_trl.py [--sizes 1m,10m] [--steps 3] [--rounds 2] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

PROMPTS = [f"Task {i}: describe the room and choose an action to take next." for i in range(8)]
GROUP = 4
NEW_TOKENS = 128


def reward_text(text: str) -> float:
    return sum(ch in "aeiou" for ch in text) / max(len(text), 1)


def build(size: str):
    from dreamgym_cli.llm.models import load_model

    corpus = PROMPTS + ["the quick brown fox jumps over the lazy dog " * 4] * 8
    return load_model(f"tiny:{size}", texts=corpus, full=True, seed=0)


def ours(size: str, steps: int, device: str = "cpu") -> tuple[list[float], float, float]:
    from dreamgym_cli.llm.generate import GenerationParams
    from dreamgym_cli.rl.rollout import Turn
    from dreamgym_cli.rl.trainer import RLSettings, Sample, make_learner, update_policy
    from dreamgym_cli.rl.algorithms import grpo_advantages
    import random

    model, tokenizer = build(size)
    model.to(device)
    settings = RLSettings(lr=1e-5, kl_coef=0.0, micro_batch_turns=32, mini_batches=1,
                          loss_agg="token-mean")  # one optimizer step per batch, as TRL
    learner = make_learner(model, tokenizer, settings)
    prompt_ids = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in PROMPTS]
    times, lengths, generating = [], [], []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        params = GenerationParams(max_new_tokens=NEW_TOKENS, temperature=1.0, n=GROUP, seed=step)
        completions = learner.backend.generate(prompt_ids, params)
        t1 = time.perf_counter()
        turns, rewards, groups = [], [], []
        for g, per_prompt in enumerate(completions):
            for c in per_prompt:
                turns.append(Turn(state="", admissible=None, prompt_ids=c.prompt_ids,
                                  token_ids=c.token_ids, logprobs=c.logprobs, text=c.text,
                                  action="", valid_format=True, in_admissible=None))
                rewards.append(reward_text(c.text))
                groups.append(g)
        adv = grpo_advantages(torch.tensor(rewards), groups).tolist()
        update_policy(learner, [Sample(t, a) for t, a in zip(turns, adv)], settings,
                      random.Random(step))
        if step > 0:  # step 0 warms up allocators and kernels
            times.append(time.perf_counter() - t0)
            generating.append(t1 - t0)
            lengths.append(statistics.mean(len(t.token_ids) for t in turns))
    return times, statistics.mean(lengths), statistics.median(generating)


def trl(size: str, steps: int, device: str = "cpu") -> tuple[list[float], float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = build(size)
    model.train()

    def reward(completions, **kwargs) -> list[float]:
        return [reward_text(c) for c in completions]

    times, started, lengths = [], [], []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            started.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - started[-1])

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(output_dir=out, per_device_train_batch_size=len(PROMPTS) * GROUP,
                            num_generations=GROUP, max_completion_length=NEW_TOKENS,
                            max_steps=steps + 1, learning_rate=1e-5, beta=0.0, temperature=1.0,
                            use_cpu=device == "cpu", bf16=False, report_to="none",
                            save_strategy="no",
                            logging_steps=1, seed=0, disable_tqdm=True)
        dataset = Dataset.from_dict({"prompt": PROMPTS * (steps + 2)})
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config,
                              train_dataset=dataset, processing_class=tokenizer,
                              callbacks=[StepTimer()])
        trainer.train()
    # TRL's step timer starts after the batch is fetched; generation happens inside the step
    # (in `_prepare_inputs`), so each interval covers generation + reward + update.
    return times[1:], statistics.mean(lengths[1:] or lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1m,10m")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2,
                        help="ours/TRL runs per size, the order swapped each round (a machine "
                        "whose load changes during the run weighs on both sides alike)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp32 on both sides)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    completions = len(PROMPTS) * GROUP
    print(f"workload: {len(PROMPTS)} prompts x {GROUP} completions x <= {NEW_TOKENS} tokens, "
          f"torch threads {torch.get_num_threads()}, {args.device}, {args.rounds} rounds of "
          f"{args.steps} timed steps per side")
    for size in args.sizes.split(","):
        ratios = []
        for r in range(args.rounds):
            sides = {}
            for side in (("ours", "trl") if r % 2 == 0 else ("trl", "ours")):
                sides[side] = (ours(size, args.steps, args.device) if side == "ours"
                               else trl(size, args.steps, args.device))
            (ours_times, ours_len, ours_gen), (trl_times, trl_len) = sides["ours"], sides["trl"]
            a, b = statistics.median(ours_times), statistics.median(trl_times)
            ratios.append(b / a)
            print(f"tiny:{size:4s} round {r + 1}  ours {completions / a:7.2f} completions/s "
                  f"({a:.2f} s/step, {ours_gen:.2f} s generating, {ours_len:.0f} "
                  f"tokens/completion)   TRL {completions / b:7.2f} completions/s ({b:.2f} "
                  f"s/step, {trl_len:.0f} tokens/completion)   ratio {b / a:.2f}x   tokens/s "
                  f"ratio {(ours_len / a) / (trl_len / b):.2f}x", flush=True)
        print(f"tiny:{size:4s} ratio (completions/s, ours / TRL): median "
              f"{statistics.median(ratios):.2f}x, range {min(ratios):.2f}-{max(ratios):.2f}x",
              flush=True)


if __name__ == "__main__":
    main()
