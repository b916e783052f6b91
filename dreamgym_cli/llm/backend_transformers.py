"""The default backend: an in-process Hugging Face model, batched with left padding and a KV cache.

Our own sampling loop over `past_key_values` rather than `model.generate`: it keeps the log-prob of
every sampled token under the distribution it was sampled from (logits / temperature; top-p's
truncation is not renormalised into it, as in verl and TRL), samples each row from its own seeded stream (so a completion does
not depend on what it was batched with), checks stop strings on the decoded tail, and drops
finished rows from the batch and the cache as it goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from dreamgym_cli.llm.backend_base import (
    Completion,
    GenerationParams,
    Prompt,
    cut_at_stop,
    prompt_ids,
    seeds_for_rows,
)


@dataclass
class _Row:
    """One completion being generated."""

    prompt: list[int]
    rng: np.random.Generator
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: str | None = None


class TransformersBackend:
    name = "transformers"

    def __init__(self, model, tokenizer, *, max_batch_size: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.pad_id = _pad_id(model, tokenizer)
        self.eos_ids = _eos_ids(model, tokenizer)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[Completion]]:
        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        seeds = seeds_for_rows(params.seed, len(ids) * params.n)
        rows = [_Row(ids[r // params.n], np.random.default_rng(s)) for r, s in enumerate(seeds)]
        # Similar lengths batched together waste less compute on padding.
        order = sorted(range(len(rows)), key=lambda r: len(rows[r].prompt))
        was_training = self.model.training
        self.model.eval()  # no dropout while sampling, whatever the trainer left set
        try:
            with torch.inference_mode():
                for start in range(0, len(order), self.max_batch_size):
                    batch = [rows[r] for r in order[start : start + self.max_batch_size]]
                    self._generate_batch(batch, params)
        finally:
            self.model.train(was_training)
        done = [self._completion(row, params) for row in rows]
        return [done[i * params.n : (i + 1) * params.n] for i in range(len(ids))]

    def close(self) -> None:
        """Nothing to release: the model belongs to the caller."""

    def _generate_batch(self, rows: list[_Row], params: GenerationParams) -> None:
        device = self.model.device
        width = max(len(r.prompt) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every row's last prompt token is at -1
            input_ids[i, width - len(row.prompt) :] = torch.tensor(row.prompt)
            mask[i, width - len(row.prompt) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                         use_cache=True, logits_to_keep=1)
        cache, positions = out.past_key_values, positions[:, -1]
        alive = list(rows)
        for step in range(params.max_new_tokens):
            logits = out.logits[:, -1, :].float()  # (B, V)
            tokens = sample_tokens(logits, params, [r.rng for r in alive])
            # log-probs of the distribution actually sampled from (logits / T), which is what the
            # trainer recomputes; greedy (T = 0) keeps the raw model's
            scaled = logits / params.temperature if params.temperature > 0 else logits
            logprobs = torch.log_softmax(scaled, dim=-1).gather(-1, tokens[:, None])[:, 0]
            for row, token, logprob in zip(alive, tokens.tolist(), logprobs.tolist()):
                row.tokens.append(token)
                row.logprobs.append(logprob)
                row.finish = self._finish_reason(row, params)
            keep = [i for i, row in enumerate(alive) if row.finish is None]
            if not keep:
                return
            if step == params.max_new_tokens - 1:
                break
            if len(keep) < len(alive):  # drop finished rows from the batch and the KV cache
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                tokens, mask, positions = tokens[index], mask[index], positions[index]
                alive = [alive[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
            positions = positions + 1
            out = self.model(input_ids=tokens[:, None], attention_mask=mask,
                             position_ids=positions[:, None], past_key_values=cache,
                             use_cache=True)
        for row in alive:
            row.finish = "length"

    def _finish_reason(self, row: _Row, params: GenerationParams) -> str | None:
        if row.tokens[-1] in self.eos_ids:
            return "stop"
        if params.stop and self._stop_in_tail(row.tokens, params.stop):
            return "stop"
        if len(row.tokens) >= params.max_new_tokens:
            return "length"
        return None

    def _stop_in_tail(self, tokens: list[int], stop: tuple[str, ...]) -> bool:
        # Every token is at least one byte, so a stop string completed by the newest token lies
        # within the last len(bytes) tokens; an older occurrence would have ended the row.
        window = max(len(s.encode("utf-8")) for s in stop) + 2
        tail = self.tokenizer.decode(tokens[-window:], skip_special_tokens=False)
        return any(s in tail for s in stop)

    def _completion(self, row: _Row, params: GenerationParams) -> Completion:
        body = row.tokens[:-1] if row.tokens and row.tokens[-1] in self.eos_ids else row.tokens
        text = self.tokenizer.decode(body, skip_special_tokens=False)
        if params.stop:
            text, _ = cut_at_stop(text, params.stop)
        return Completion(prompt_ids=list(row.prompt), token_ids=list(row.tokens),
                          logprobs=list(row.logprobs), text=text, finish_reason=row.finish)


def sample_tokens(logits: torch.Tensor, params: GenerationParams,
                  rngs: list[np.random.Generator]) -> torch.Tensor:
    """One token per row: argmax at temperature 0, else inverse-CDF sampling with each row's rng.

    logits: (B, V) float32 -> (B,) long.
    """
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    index = None
    if params.top_p < 1.0:
        probs, index = probs.sort(dim=-1, descending=True)
        # keep a token while the mass before it is < top_p (the most likely one always stays)
        probs = probs * ((probs.cumsum(-1) - probs) < params.top_p)
    cdf = probs.cumsum(-1)
    uniform = torch.tensor([rng.random() for rng in rngs], dtype=cdf.dtype, device=cdf.device)
    # right=True: the first token whose cdf exceeds u, so a zero-probability token is never picked
    picked = torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True)
    picked = picked.clamp(max=logits.shape[-1] - 1)
    return (picked if index is None else index.gather(-1, picked))[:, 0]


def _pad_id(model, tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id,
                      getattr(model.config, "pad_token_id", None)):
        if candidate is not None:
            return int(candidate)
    return 0


def _eos_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {int(i) for i in ids if i is not None}
