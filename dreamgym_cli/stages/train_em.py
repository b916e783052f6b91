"""`dreamgym train-em`: fine-tune the experience model on the store's real transitions.

SFT with the loss on the completion only (reasoning + next state + reward/done/success tags: the
paper's joint loss). Episodes are split into train and held-out by a hash of their id, so no
held-out transition's episode is seen in training. The ablation switches of the paper are
`--no-reasoning`, `--retrieval-k 0` and `--history 0`; they are saved in the model dir (em.json)
so the dream env builds its prompts the way the model was trained.

The same weights write new tasks for the curriculum (DESIGN §8), so the training data also holds
`--task-examples` task-generation examples per training task (`task_generation_pairs`: the task
prompt answered with a real task that starts from the same state); 0 leaves them out.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from dreamgym_cli.artifacts import ArtifactRun
from dreamgym_cli.config import option, require_paths, to_dict
from dreamgym_cli.errors import InputError
from dreamgym_cli.experience.episodes import load_real_episodes, split_episodes


@dataclasses.dataclass(frozen=True)
class TrainEMConfig:
    store: Path = option(None, help="Replay store with real transitions (and reasoning).")
    out: Path = option(None, help="Experience-model directory to write.")
    base: str = option("tiny:10m", help="Base model: tiny:<1m|10m|30m> or a local HF model dir.")
    epochs: float = option(1.0, help="Passes over the training transitions.")
    max_steps: int | None = option(None, help="Stop after this many optimizer steps.")
    batch_size: int = option(8, help="Examples per optimizer step.")
    lr: float | None = option(None, help="Learning rate (default 1e-3 for tiny, 2e-4 for LoRA).")
    max_length: int = option(1536, help="Longest example in tokens (prompt cut from the left).")
    retrieval_k: int = option(3, help="Retrieved transitions in each prompt (0 = ablation).")
    history: int = option(2, help="Past (state, action) pairs in each prompt (0 = ablation).")
    history_budget_tokens: int = option(256, help="Token budget of the history section.")
    reasoning: bool = option(True, help="Train on <think> reasoning (--no-reasoning = ablation).")
    task_examples: int = option(4, help="Task-generation examples per training task (the "
                                "curriculum's <task> format); 0 = none.")
    heldout_fraction: float = option(0.1, help="Share of episodes held out for eval loss.")
    full: bool = option(False, help="Train all weights of a pretrained base instead of LoRA.")
    lora_r: int = option(16, help="LoRA rank (pretrained bases).")
    lora_alpha: int = option(32, help="LoRA alpha (pretrained bases).")
    lora_targets: str = option("all-linear", help="Comma-separated LoRA target modules.")
    seed: int = option(0, help="Seed for model init, data order and the held-out split.")
    eval_every: int = option(50, help="Held-out loss every this many steps.")
    checkpoint_every: int = option(100, help="Checkpoint every this many steps (for --resume).")
    resume: bool = option(False, help="Continue from the last checkpoint of this output.")
    force: bool = option(False, help="Retrain even if the output is up to date.")

    def __post_init__(self):
        require_paths(self, "store", "out")
        checks = [(self.batch_size >= 1, "batch_size", ">= 1"), (self.retrieval_k >= 0,
                  "retrieval_k", ">= 0"), (self.history >= 0, "history", ">= 0"),
                  (self.task_examples >= 0, "task_examples", ">= 0"),
                  (0 <= self.heldout_fraction < 1, "heldout_fraction", "in [0, 1)"),
                  (self.max_steps is None or self.max_steps >= 1, "max_steps", ">= 1"),
                  (self.epochs > 0, "epochs", "> 0"), (self.max_length >= 64, "max_length",
                  ">= 64")]
        for ok, field, expected in checks:
            if not ok:
                raise InputError(f"expected {expected}, got {getattr(self, field)!r}",
                                 field=field)


def run(config: TrainEMConfig, progress=None) -> dict[str, Any]:
    from dreamgym_cli.store import ReplayStore

    from dreamgym_cli.scale import distributed

    store = ReplayStore.open(config.store)
    run_ = ArtifactRun("train-em", config.out, to_dict(config), inputs={"store": config.store},
                       fingerprint_config={k: v for k, v in to_dict(config).items()
                                           if k not in ("resume", "force", "eval_every",
                                                        "checkpoint_every")},
                       force=config.force)
    # under `accelerate launch`: ranks > 0 train their share and write nothing
    followed = distributed.follow(run_, lambda out: _train(store, config, out, None))
    if followed is not None:
        return followed
    with run_:
        if run_.up_to_date:
            return {"out": str(config.out), "skipped": True, **run_.previous["metrics"]}
        metrics = _train(store, config, run_.tmp, progress)
        manifest = run_.commit(metrics={k: v for k, v in metrics.items() if k != "curve"},
                               extra={"curve": metrics["curve"]})
    distributed.done()
    return {"out": str(config.out), "skipped": False, **manifest["metrics"]}


def _train(store, config: TrainEMConfig, out_dir: Path | None, progress) -> dict[str, Any]:
    """Train; save into out_dir (None: a rank > 0 of a multi-process launch, which saves nothing)."""
    from dreamgym_cli.curriculum.variation import task_generation_pairs
    from dreamgym_cli.experience.examples import (EMSettings, build_pairs, corpus_texts,
                                                  retrieve_for, transitions_from_episodes)
    from dreamgym_cli.llm import sft
    from dreamgym_cli.llm.models import LoraSettings, load_model, save_model
    from dreamgym_cli.llm.tiny import is_tiny_spec

    episodes = load_real_episodes(store)
    if not episodes:
        raise InputError("the store has no real episodes to learn from; run `dreamgym ingest` "
                         "first", file=config.store)
    missing = sum(1 for _, _, steps in episodes for s in steps if not s.get("reasoning"))
    if config.reasoning and missing:
        raise InputError(f"{missing} real transitions have no reasoning; run `dreamgym annotate "
                         f"--store {config.store}` first, or train with --no-reasoning",
                         file=config.store)
    train_eps, held_eps = split_episodes(episodes, config.heldout_fraction, config.seed)
    settings = EMSettings(retrieval_k=config.retrieval_k, history=config.history,
                          history_budget_tokens=config.history_budget_tokens,
                          reasoning=config.reasoning, store=str(config.store.resolve()),
                          max_length=config.max_length)
    tiny = is_tiny_spec(config.base)
    lora = None if tiny or config.full else LoraSettings(
        r=config.lora_r, alpha=config.lora_alpha,
        target_modules=tuple(t.strip() for t in config.lora_targets.split(",") if t.strip()))
    transitions = {name: transitions_from_episodes(eps, config.history)
                   for name, eps in (("train", train_eps), ("heldout", held_eps))}
    # A tiny model's tokenizer is trained first, on the texts the prompts are made of, so that
    # the history budget is measured in the same tokens here and in the dream env.
    task_pairs = task_generation_pairs(train_eps, config.task_examples)
    texts = corpus_texts(transitions["train"]) + [p + c for p, c in task_pairs] if tiny else None
    model, tokenizer = load_model(config.base, texts=texts, lora=lora,
                                  full=config.full or tiny, seed=config.seed)
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    examples = {}
    for name, items in transitions.items():
        pairs = build_pairs(items, retrieve_for(store, items, config.retrieval_k), settings, count)
        if name == "train":
            pairs += task_pairs
        examples[name] = [sft.encode_pair(tokenizer, p, c, config.max_length) for p, c in pairs]
    lr = config.lr if config.lr is not None else (1e-3 if tiny else 2e-4)
    sft_settings = sft.SFTSettings(lr=lr, batch_size=config.batch_size, epochs=config.epochs,
                                   max_steps=config.max_steps, seed=config.seed,
                                   eval_every=config.eval_every,
                                   checkpoint_every=config.checkpoint_every)
    checkpoints = config.out.with_name(f".{config.out.name}.checkpoints")
    from dreamgym_cli.scale.distributed import current

    metrics = sft.train(model, tokenizer, examples["train"], examples["heldout"], sft_settings,
                        checkpoint_dir=checkpoints, resume=config.resume, progress=progress,
                        dist=current())
    if out_dir is None:
        return metrics
    save_model(model, tokenizer, out_dir)
    settings.save(out_dir)
    shutil.rmtree(checkpoints, ignore_errors=True)
    lengths = [len(e["input_ids"]) for e in examples["train"]]
    return {**metrics, "train_episodes": len(train_eps), "heldout_episodes": len(held_eps),
            "heldout_episode_ids": sorted(e[1]["episode_id"] for e in held_eps),
            "mean_example_tokens": round(sum(lengths) / len(lengths), 1),
            "em/reasoning": config.reasoning, "em/retrieval_k": config.retrieval_k,
            "em/history": config.history,
            "em/task_examples": len(task_pairs)}
