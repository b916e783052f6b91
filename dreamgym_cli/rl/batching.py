"""Turns → padded tensors, and the forward pass that scores the sampled tokens again.

A turn's sequence is its prompt ids followed by its sampled answer ids, exactly as generated.
Logits at position p predict the token at p + 1, so the tensors over *targets* have width T − 1
and the answer's tokens sit at target indices P − 1 … P + C − 2 (P prompt, C answer tokens).
`answer_mask` is True exactly there: losses never see prompt or observation tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from dreamgym_cli.rl.algorithms import entropy_from_logits, token_logprobs


@dataclasses.dataclass
class TurnBatch:
    input_ids: torch.Tensor  # [B, T] right-padded
    attention_mask: torch.Tensor  # [B, T]
    targets: torch.Tensor  # [B, T-1] = input_ids[:, 1:]
    answer_mask: torch.Tensor  # [B, T-1] bool: target is a sampled answer token
    old_logprobs: torch.Tensor  # [B, T-1] the rollout's log-probs at answer targets, else 0
    prompt_last: torch.Tensor  # [B] index of each prompt's last token (value head input)

    @property
    def answer_tokens(self) -> int:
        return int(self.answer_mask.sum())

    def to(self, device) -> "TurnBatch":
        """The same batch on `device` (the model's: a GPU under `accelerate launch`)."""
        return TurnBatch(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


def model_device(model) -> torch.device:
    """Where `model`'s weights live (the batches of its forward passes go there)."""
    return next(model.parameters()).device


def collate_turns(turns: Sequence, pad_id: int, device=None) -> TurnBatch:
    """Right-padded tensors of turns that carry prompt_ids, token_ids and logprobs (on `device`
    when given, else the CPU)."""
    width = max(len(t.prompt_ids) + len(t.token_ids) for t in turns)
    n = len(turns)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    answer = torch.zeros((n, width - 1), dtype=torch.bool)
    old = torch.zeros((n, width - 1), dtype=torch.float32)
    last = torch.zeros(n, dtype=torch.long)
    for i, t in enumerate(turns):
        p, c = len(t.prompt_ids), len(t.token_ids)
        ids[i, :p + c] = torch.tensor(list(t.prompt_ids) + list(t.token_ids))
        attention[i, :p + c] = 1
        answer[i, p - 1:p - 1 + c] = True
        old[i, p - 1:p - 1 + c] = torch.tensor(t.logprobs, dtype=torch.float32)
        last[i] = p - 1
    batch = TurnBatch(ids, attention, ids[:, 1:], answer, old, last)
    return batch if device is None else batch.to(device)


def per_token(batch: TurnBatch, values_by_turn: Sequence[Sequence[float]]) -> torch.Tensor:
    """Per-turn lists over answer tokens (e.g. reference log-probs) → [B, T-1] (0 elsewhere)."""
    out = torch.zeros(batch.answer_mask.shape, dtype=torch.float32)
    for i, values in enumerate(values_by_turn):
        start = int(batch.prompt_last[i])
        out[i, start:start + len(values)] = torch.tensor(list(values), dtype=torch.float32)
    return out.to(batch.answer_mask.device)


def answer_values(batch: TurnBatch, per_token_values: torch.Tensor) -> list[list[float]]:
    """The inverse of `per_token`: each turn's values at its answer tokens."""
    rows = []
    for i in range(per_token_values.shape[0]):
        rows.append(per_token_values[i][batch.answer_mask[i]].tolist())
    return rows


@dataclasses.dataclass
class ForwardOut:
    logprobs: torch.Tensor  # [B, T-1] log p(target)
    entropy: torch.Tensor | None  # [B, T-1]
    values: torch.Tensor | None  # [B] value head at each prompt's last token


def forward_turns(model, batch: TurnBatch, *, value_head=None, entropy: bool = False,
                  temperature: float = 1.0, detach_value: bool = False) -> ForwardOut:
    """Score the targets under `model` (gradients flow unless the caller disables them).

    temperature: the sampling temperature of the rollout; logits are divided by it so the
    log-probs are those of the distribution the tokens were sampled from (the rollout stores the
    same). detach_value: the value head reads the trunk's hidden state without sending gradients
    back into it (the critic cannot steer the policy's weights).
    """
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                output_hidden_states=value_head is not None, use_cache=False)
    logits = out.logits[:, :-1]  # [B, T-1, V]
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    logp = token_logprobs(logits, batch.targets)
    ent = entropy_from_logits(logits) if entropy else None
    values = None
    if value_head is not None:
        hidden = out.hidden_states[-1]  # [B, T, H]
        at_prompt_end = hidden[torch.arange(hidden.shape[0]), batch.prompt_last]  # [B, H]
        values = value_head(at_prompt_end.detach().float() if detach_value
                            else at_prompt_end.float())
    return ForwardOut(logp, ent, values)
