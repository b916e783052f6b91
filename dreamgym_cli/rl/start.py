"""The policy a train-agent run starts from (`--init` policy or `--base` model) and where the run
keeps its checkpoints."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def load_start_model(config, texts: Callable[[Any], list[str]]):
    """(model, tokenizer, settings, tiny) from --init or --base. settings: the output's
    PolicySettings (`config.policy_settings` over the init policy's, or over the defaults);
    `texts(settings)` trains a tiny base's tokenizer."""
    from dreamgym_cli.llm.models import LoraSettings, load_model
    from dreamgym_cli.llm.tiny import is_tiny_spec
    from dreamgym_cli.rl.policy import load_policy

    if config.init is not None:
        model, tokenizer, saved = load_policy(config.init)
        return model, tokenizer, config.policy_settings(saved), _is_tiny_origin(model)
    settings = config.policy_settings()
    tiny = is_tiny_spec(config.base)
    lora = None if tiny or config.full else LoraSettings(r=config.lora_r, alpha=config.lora_alpha)
    model, tokenizer = load_model(config.base, texts=texts(settings) if tiny else None, lora=lora,
                                  full=config.full or tiny, seed=config.seed)
    return model, tokenizer, settings, tiny


def _is_tiny_origin(model) -> bool:
    """Whether a loaded policy descends from a tiny model (they take larger learning rates)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    info = getattr(inner, "_dreamgym_info", None) or {}
    return str(info.get("origin", "")).startswith("tiny:")


def checkpoint_dir(out: Path) -> Path:
    """A run's checkpoints: a hidden sibling of its output directory."""
    return out.with_name(f".{out.name}.checkpoints")


def remove_checkpoints(out: Path) -> None:
    shutil.rmtree(checkpoint_dir(out), ignore_errors=True)
