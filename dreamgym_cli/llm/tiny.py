"""`tiny:<size>` models: small Llama-style models built from a config, with a BPE tokenizer
trained on the caller's texts (the replay store's text). Randomly initialised, seeded, and saved
like any Hugging Face model dir, so everything downstream treats them as ordinary HF models.

Sizes are approximate parameter counts at the full vocabulary; a small corpus yields a smaller
vocabulary (BPE stops when no pair repeats) and so a slightly smaller embedding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from dreamgym_cli.errors import InputError, unknown_name
from dreamgym_cli.llm.tokenizer import train_bpe_tokenizer

TINY_PREFIX = "tiny:"
MAX_POSITIONS = 4096


@dataclass(frozen=True)
class TinySize:
    """The shape of one tiny model (head_dim = hidden / heads)."""

    vocab: int
    hidden: int
    layers: int
    heads: int
    intermediate: int


# ≈1.07M, ≈10.5M, ≈29.5M parameters at full vocabulary (embeddings tied with the output head).
TINY_SIZES: dict[str, TinySize] = {
    "1m": TinySize(vocab=2048, hidden=128, layers=4, heads=4, intermediate=352),
    "10m": TinySize(vocab=4096, hidden=256, layers=12, heads=4, intermediate=688),
    "30m": TinySize(vocab=8192, hidden=512, layers=8, heads=8, intermediate=1376),
}


def is_tiny_spec(spec: str) -> bool:
    return isinstance(spec, str) and spec.startswith(TINY_PREFIX)


def tiny_size(spec: str) -> TinySize:
    """The size named by `tiny:<size>`; an unknown size is an InputError with a did-you-mean."""
    if not is_tiny_spec(spec):
        raise InputError(f"'{spec}' is not a tiny model spec (expected 'tiny:<size>')")
    name = spec[len(TINY_PREFIX):].lower()
    if name not in TINY_SIZES:
        raise unknown_name("tiny model size", spec, [TINY_PREFIX + s for s in TINY_SIZES])
    return TINY_SIZES[name]


def tiny_config(size: TinySize, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,  # at this size the embedding is a large share of the weights
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )


def build_tiny(
    spec: str, texts: Iterable[str], seed: int = 0
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A freshly initialised `tiny:<size>` model and its tokenizer trained on `texts`.

    The same spec, texts and seed give the same weights and tokenizer.
    """
    size = tiny_size(spec)
    texts = list(texts)
    if not texts:
        raise InputError(f"{spec} needs texts to train its tokenizer; none were given")
    tokenizer = train_bpe_tokenizer(texts, size.vocab, model_max_length=MAX_POSITIONS)
    config = tiny_config(size, tokenizer)
    # Seed a private generator state: building a model must not disturb the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.eval()
    return model, tokenizer


def parameter_count(model: torch.nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
