"""What every generation backend speaks: prompts, sampling parameters, completions, the Protocol.

The backends (`backend_transformers`, `backend_openai`, `backend_vllm`) import this module and the
helpers at its end; `generate.py` picks a backend by name and re-exports these names, so callers
keep writing `from dreamgym_cli.llm.generate import GenerationParams, open_backend`.
See `generate.py` for what a `Completion` holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dreamgym_cli.config import option
from dreamgym_cli.errors import InputError

Prompt = str | Sequence[int]


@dataclass(frozen=True)
class GenerationParams:
    """How to sample completions."""

    max_new_tokens: int = option(128, help="most tokens generated per completion")
    temperature: float = option(1.0, help="sampling temperature; 0 means greedy")
    top_p: float = option(1.0, help="nucleus sampling: keep the smallest token set with this mass")
    stop: tuple[str, ...] = option((), help="stop at the first occurrence of any of these strings")
    seed: int | None = option(
        None, help="same seed, same prompts => same completions; vary it between calls")
    n: int = option(1, help="completions per prompt")

    def __post_init__(self):
        # one string is one stop string (not its characters); a list from a config file is fine
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        object.__setattr__(self, "stop", stop)
        checks = [
            (self.max_new_tokens >= 1, "max_new_tokens", "an integer >= 1"),
            (self.temperature >= 0, "temperature", "a number >= 0"),
            (0 < self.top_p <= 1, "top_p", "a number in (0, 1]"),
            (self.n >= 1, "n", "an integer >= 1"),
            (all(isinstance(s, str) and s for s in self.stop), "stop", "non-empty strings"),
        ]
        for ok, field, expected in checks:
            if not ok:
                raise InputError(f"expected {expected}, got {getattr(self, field)!r}", field=field)


class BackendError(RuntimeError):
    """A backend (a server, an engine) failed, or kept failing after retries: exit 1, not 2."""


@dataclass(frozen=True)
class Completion:
    """One sampled completion. Ids and log-probs are None where a server did not return them."""

    prompt_ids: list[int] | None
    token_ids: list[int] | None
    logprobs: list[float] | None
    text: str
    finish_reason: str  # "stop" | "length"

    @property
    def has_token_ids(self) -> bool:
        return self.prompt_ids is not None and self.token_ids is not None


class GenerationBackend(Protocol):
    name: str

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[Completion]]:
        """Per prompt, `params.n` completions."""

    def close(self) -> None:
        """Release connections, threads, engines."""


# ---- helpers shared by the backends -------------------------------------------------------


def prompt_ids(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids of one prompt: ids pass through; text is tokenized as is (no BOS added)."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    ids = [int(i) for i in prompt]
    if not ids:
        raise InputError("a prompt has no tokens", field="prompt")
    return ids


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """text before the earliest occurrence of any stop string, and whether one occurred."""
    positions = [p for p in (text.find(s) for s in stop) if p >= 0]
    return (text[: min(positions)], True) if positions else (text, False)


def seeds_for_rows(seed: int | None, rows: int) -> list[int | None]:
    """A seed per completion row (prompt i, sample j -> row i*n+j), independent of batching."""
    if seed is None:
        return [None] * rows
    # SeedSequence mixes (seed, row) well: neighbouring rows get unrelated streams.
    return [int(np.random.SeedSequence([seed, row]).generate_state(1)[0]) for row in range(rows)]
