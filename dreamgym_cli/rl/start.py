"""The policy a train-agent run starts from (`--init` policy or `--base` model), its settings,
and where the run keeps its checkpoints."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def policy_settings(config, base: Any = None):
    """The output's PolicySettings: the init policy's, overridden by what the config sets."""
    from dreamgym_cli.rl.policy import PolicySettings

    base = base or PolicySettings()
    return PolicySettings(
        think=base.think if config.think is None else config.think,
        history_budget_tokens=(base.history_budget_tokens if config.history_budget_tokens is None
                               else config.history_budget_tokens),
        max_new_tokens=base.max_new_tokens if config.max_new_tokens is None
        else config.max_new_tokens,
        made_by={"algo": config.algo, "init": str(config.init) if config.init else None,
                 "base": config.base, "env": config.env, "seed": config.seed,
                 "parent": base.made_by or None},
    )


def load_start_model(config, texts: Callable[[], list[str]]):
    """(model, tokenizer, settings, tiny) from --init or --base; `texts` trains a tiny tokenizer."""
    from dreamgym_cli.llm.models import LoraSettings, load_model
    from dreamgym_cli.llm.tiny import is_tiny_spec
    from dreamgym_cli.rl.policy import PolicySettings, load_policy

    if config.init is not None:
        model, tokenizer, saved = load_policy(config.init)
        return model, tokenizer, policy_settings(config, saved), _is_tiny_origin(model)
    tiny = is_tiny_spec(config.base)
    lora = None if tiny or config.full else LoraSettings(r=config.lora_r, alpha=config.lora_alpha)
    model, tokenizer = load_model(config.base, texts=texts() if tiny else None, lora=lora,
                                  full=config.full or tiny, seed=config.seed)
    return model, tokenizer, policy_settings(config, PolicySettings()), tiny


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
