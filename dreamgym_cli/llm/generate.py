"""One generation interface for the experience model and the policy, with backends by name.

    backend = open_backend("transformers", model=model, tokenizer=tokenizer)
    completions = backend.generate(prompts, GenerationParams(max_new_tokens=64, stop=("</action>",)))
    completions[i][j]  # the j-th of params.n completions of prompt i

Prompts are strings (tokenized exactly as given: no BOS is added, so render chats with
`chat_prompt_ids`, which applies the chat template and its BOS) or lists of token ids (used as
they are: multi-turn rollouts extend the ids they already hold, never decode and re-tokenize).

A `Completion` carries the sampled token ids and their log-probs (transformers backend: under
logits / temperature, the distribution sampled from, before top-p truncation; vLLM: its
configured logprobs mode, raw by default, which equals it at temperature 1). That is the quantity
the RL trainer recomputes in its forward pass (`rl.batching.forward_turns(temperature=...)`). `text` stops before the first stop
string (OpenAI semantics: the stop string itself is not in `text`), while `token_ids` run through
the token that completed it (the model did sample it), so `decode(token_ids)` starts with `text`.
A final EOS is in `token_ids` (its log-prob teaches stopping) but not in `text`.
`finish_reason` is "stop" (EOS or a stop string) or "length".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dreamgym_cli.config import option
from dreamgym_cli.errors import InputError, unknown_name

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


def _transformers(**options) -> GenerationBackend:
    from dreamgym_cli.llm.backend_transformers import TransformersBackend

    return TransformersBackend(**options)


def _openai(**options) -> GenerationBackend:
    from dreamgym_cli.llm.backend_openai import OpenAIBackend

    return OpenAIBackend(**options)


def _vllm(**options) -> GenerationBackend:
    from dreamgym_cli.llm.backend_vllm import VllmBackend

    return VllmBackend(**options)


# name -> factory; imports are lazy so choosing one backend never imports another's deps.
BACKENDS: dict[str, Callable[..., GenerationBackend]] = {
    "transformers": _transformers,
    "openai": _openai,
    "vllm": _vllm,
}


def open_backend(name: str, **options: Any) -> GenerationBackend:
    """The backend called `name`, built with its own options (see each backend's __init__)."""
    if name not in BACKENDS:
        raise unknown_name("generation backend", name, BACKENDS, field="backend")
    return BACKENDS[name](**options)


# ---- helpers shared by the backends -------------------------------------------------------


def prompt_ids(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids of one prompt: ids pass through; text is tokenized as is (no BOS added)."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    ids = [int(i) for i in prompt]
    if not ids:
        raise InputError("a prompt has no tokens", field="prompt")
    return ids


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat rendered by the tokenizer's template, ready for the assistant turn."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                        return_dict=False)
    return [int(i) for i in ids]


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
