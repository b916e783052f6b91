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

from collections.abc import Callable
from typing import Any

from dreamgym_cli.errors import unknown_name
from dreamgym_cli.llm.backend_base import (  # re-exported: callers import them from here
    BackendError,
    Completion,
    GenerationBackend,
    GenerationParams,
    Prompt,
    cut_at_stop,
    prompt_ids,
    seeds_for_rows,
)

__all__ = ["BACKENDS", "BackendError", "Completion", "GenerationBackend", "GenerationParams",
           "Prompt", "chat_prompt_ids", "cut_at_stop", "open_backend", "prompt_ids",
           "seeds_for_rows"]


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


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat rendered by the tokenizer's template, ready for the assistant turn."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                        return_dict=False)
    return [int(i) for i in ids]
