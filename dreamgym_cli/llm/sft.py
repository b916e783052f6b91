"""Supervised fine-tuning on (prompt, completion) pairs with the loss on the completion only.

One loop serves the experience model (`train-em`: prompt = task/retrieved/history/state/action,
completion = reasoning + next state + reward/done tags, the paper's joint loss) and behaviour
cloning of the policy (`train-agent --algo sft`). Prompts are encoded with the tokenizer's chat
template when it has one (`encode_prompt`), the same function generation uses, so training and
sampling see identical token ids.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from dreamgym_cli.artifacts import readable_dir
from dreamgym_cli.errors import InputError

IGNORE = -100


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt as the model sees it before its completion (one user turn)."""
    from dreamgym_cli.llm.generate import chat_prompt_ids

    if getattr(tokenizer, "chat_template", None):
        return chat_prompt_ids(tokenizer, [{"role": "user", "content": prompt}])
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def encode_pair(tokenizer, prompt: str, completion: str, max_length: int) -> dict[str, list[int]]:
    """input_ids/labels for one example; the prompt is cut from the left to fit, never the target."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    target = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        target = target + [tokenizer.eos_token_id]
    target = target[:max_length]
    room = max_length - len(target)
    if len(prompt_ids) > room:
        prompt_ids = prompt_ids[len(prompt_ids) - room:] if room > 0 else []
    return {"input_ids": prompt_ids + target, "labels": [IGNORE] * len(prompt_ids) + target}


def collate(examples: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids/attention_mask/labels [B, T]."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclasses.dataclass(frozen=True)
class SFTSettings:
    lr: float = 1e-3
    batch_size: int = 8
    epochs: float = 1.0
    max_steps: int | None = None
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 50
    checkpoint_every: int = 100


def completion_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over completion tokens (labels != IGNORE)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shift_logits = logits[:, :-1].float()  # [B, T-1, V]
    shift_labels = batch["labels"][:, 1:]  # [B, T-1]
    return torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                                             shift_labels.reshape(-1), ignore_index=IGNORE)


@torch.no_grad()
def evaluate_loss(model, examples: Sequence[dict], pad_id: int, batch_size: int) -> float | None:
    if not examples:
        return None
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = collate(examples[i:i + batch_size], pad_id)
        n = int((batch["labels"][:, 1:] != IGNORE).sum())
        total += float(completion_loss(model, batch)) * n
        count += n
    model.train()
    return total / max(count, 1)


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(model, tokenizer, train_examples: Sequence[dict], eval_examples: Sequence[dict],
          settings: SFTSettings, *, checkpoint_dir: Path | None = None, resume: bool = False,
          progress: Callable[[int, int, dict], None] | None = None,
          dist=None) -> dict[str, Any]:
    """Train in place; returns metrics {train/loss (last), eval/loss, steps, curve, seconds}.

    Checkpoints (model + optimizer + scheduler + step + curve, and the settings that made them)
    go to `checkpoint_dir/last` every `checkpoint_every` steps; `resume=True` continues from
    there with the same batch order (fixed up front from the seed, so no RNG state is needed).
    A checkpoint made with other settings (lr, batch size, steps, seed, ...) or another number of
    examples is refused (InputError) instead of silently mixing two runs.
    dist: a `scale.distributed.Dist` under `accelerate launch`: each rank trains on its share of
    every batch (same losses as one process) and only rank 0 writes checkpoints.
    """
    if not train_examples:
        raise ValueError("no training examples")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    steps_per_epoch = math.ceil(len(train_examples) / settings.batch_size)
    total = settings.max_steps or max(1, math.ceil(steps_per_epoch * settings.epochs))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _schedule(s, total, min(settings.warmup_steps, total // 10 + 1)))
    order = _batch_order(len(train_examples), settings.batch_size, total, settings.seed)
    start, curve = 0, []
    made_by = _run_identity(settings, total, len(train_examples))
    last = readable_dir(checkpoint_dir / "last") if resume and checkpoint_dir is not None \
        else None
    if last is not None:
        start, curve = _load_checkpoint(last, model, optimizer, scheduler, made_by)
    wrapped = model if dist is None else dist.prepare(model)
    model.train()
    t0 = time.perf_counter()
    eval_loss = None
    for step in range(start, total):
        if dist is None:
            batch = collate([train_examples[i] for i in order[step]], pad_id)
            loss = completion_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss_value = loss.detach().item()
        else:
            optimizer.zero_grad(set_to_none=True)
            loss_value = distributed_step(dist, wrapped, [train_examples[i] for i in order[step]], pad_id)
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        optimizer.step()
        scheduler.step()
        point = {"step": step + 1, "train/loss": loss_value, "lr": scheduler.get_last_lr()[0]}
        if settings.eval_every and ((step + 1) % settings.eval_every == 0 or step + 1 == total):
            eval_loss = evaluate_loss(model, eval_examples, pad_id, settings.batch_size)
            point["eval/loss"] = eval_loss
        curve.append(point)
        if progress is not None:
            progress(step + 1, total, point)
        if checkpoint_dir is not None and settings.checkpoint_every and \
                (step + 1) % settings.checkpoint_every == 0 and step + 1 < total:
            if dist is None or dist.is_main:
                _save_checkpoint(checkpoint_dir / "last", model, optimizer, scheduler, step + 1,
                                 curve, made_by)
            if dist is not None:
                dist.wait()
    return {
        "train/loss": curve[-1]["train/loss"] if curve else None,
        "eval/loss": eval_loss,
        "steps": total,
        "examples": len(train_examples),
        "eval_examples": len(eval_examples),
        "seconds": round(time.perf_counter() - t0, 2),
        "curve": curve,
    }


def _batch_order(n: int, batch_size: int, total: int, seed: int) -> list[list[int]]:
    """The batches of every step, fixed up front so that a resumed run sees the same data."""
    rng = random.Random(seed)
    batches: list[list[int]] = []
    while len(batches) < total:
        perm = list(range(n))
        rng.shuffle(perm)
        batches.extend(perm[i:i + batch_size] for i in range(0, n, batch_size))
    return batches[:total]


def _run_identity(settings: SFTSettings, total: int, examples: int) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it."""
    identity = dataclasses.asdict(settings)
    for key in ("eval_every", "checkpoint_every"):  # may change between the two runs
        identity.pop(key)
    return {**identity, "total_steps": total, "examples": examples}


def _save_checkpoint(path: Path, model, optimizer, scheduler, step: int, curve: list,
                     made_by: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from dreamgym_cli.artifacts import atomic_dir

    with atomic_dir(path) as tmp:
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                   tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "curve": curve,
                                                    "made_by": made_by}))


def _load_checkpoint(path: Path, model, optimizer, scheduler,
                     made_by: dict[str, Any]) -> tuple[int, list]:
    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text())
    saved = state.get("made_by")
    if saved is not None and saved != made_by:
        differ = sorted(k for k in set(saved) | set(made_by) if saved.get(k) != made_by.get(k))
        raise InputError("the checkpoint was made by a run with other settings ("
                         + ", ".join(f"{k}: {saved.get(k)!r} there, {made_by.get(k)!r} now"
                                     for k in differ)
                         + "); resume with the same settings, or drop --resume to start over",
                         file=path / "state.json")
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)
    optim = torch.load(path / "optim.pt", weights_only=True)
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    return int(state["step"]), list(state["curve"])


def completion_tokens(example: dict[str, list[int]]) -> int:
    """Completion tokens that `completion_loss` counts in this example (labels after shifting)."""
    return sum(1 for label in example["labels"][1:] if label != IGNORE)


def distributed_step(dist, wrapped, examples: Sequence[dict], pad_id: int) -> float:
    """Under `accelerate launch` (`dist`: a `scale.distributed.Dist`): backward of this rank's
    share of one global batch; the global batch's mean loss.

    Same value and gradient as `loss = completion_loss(model, collate(examples)); loss.backward()`
    in one process: sum of token losses / global completion tokens, times world size (DDP
    averages). A rank with no example of this batch still joins the gradient all-reduce.
    """
    total = sum(completion_tokens(e) for e in examples)
    mine = dist.share(examples) or list(examples[:1])
    scale = dist.world / max(total, 1) if dist.share(examples) else 0.0
    batch = {k: v.to(dist.device) for k, v in collate(mine, pad_id).items()}
    logits = wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    token_sum = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.size(-1)), batch["labels"][:, 1:].reshape(-1),
        ignore_index=IGNORE, reduction="sum")
    (token_sum * scale).backward()
    local = float(token_sum.detach()) if scale else 0.0
    return dist.sum([local])[0] / max(total, 1)
