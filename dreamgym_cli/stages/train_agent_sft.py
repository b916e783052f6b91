"""train-agent's start model and its `sft` algorithm (behaviour cloning on real episodes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamgym_cli.errors import InputError


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


def answer_text(action: str, thought: str | None, think: bool) -> str:
    """The answer the policy should give: what `parse_action` reads back as `action`."""
    if think:
        return f"<think>{(thought or '').strip()}</think>\n<action>{action}</action>"
    return f"<action>{action}</action>"


def sft_pairs(episodes, settings, count_tokens) -> list[tuple[str, str]]:
    """(prompt, answer) per real step, the prompt built exactly as the rollout builds it."""
    from dreamgym_cli.rl.agent_prompt import build_agent_prompt

    pairs = []
    for task, _, steps in episodes:
        history: list[tuple[str, str]] = []
        for s in steps:
            prompt = build_agent_prompt(task["instruction"], history, s["state"], s["admissible"],
                                        think=settings.think,
                                        history_budget_tokens=settings.history_budget_tokens,
                                        count_tokens=count_tokens)
            pairs.append((prompt, answer_text(s["action"], s.get("reasoning"), settings.think)))
            history.append((s["state"], s["action"]))
    return pairs


SFT_DATA = ("auto", "expert", "successful", "all")


def select_sft_episodes(episodes: list, which: str) -> list:
    """The episodes (and steps) behaviour cloning learns from.

    expert      episodes of the `expert` policy only
    successful  successful episodes, without their off-list actions (an ε-random move that the
                env refused is no behaviour to clone)
    all         every real episode, every step
    auto        expert when the store has any, else successful: a mixed policy's successes still
                hold its random moves, so they are a fallback, not the default
    """
    if which == "auto":
        experts = select_sft_episodes(episodes, "expert")
        return experts or select_sft_episodes(episodes, "successful")
    if which == "expert":
        return [e for e in episodes if e[1].get("policy") == "expert"]
    if which == "successful":
        out = []
        for task, episode, steps in episodes:
            if not episode.get("success"):
                continue
            clean = [s for s in steps if not s.get("admissible") or
                     s["action"] in s["admissible"]]
            if clean:
                out.append((task, episode, clean))
        return out
    return list(episodes)


def sft_episodes(config) -> list:
    from dreamgym_cli.stages.train_em import load_real_episodes
    from dreamgym_cli.store import ReplayStore

    episodes = select_sft_episodes(load_real_episodes(ReplayStore.open(config.store)),
                                   config.sft_data)
    if not episodes:
        raise InputError(f"the store has no episodes for --sft-data {config.sft_data}"
                         + ("" if config.sft_data == "all" else " (try --sft-data all)"),
                         file=config.store)
    return episodes


def train_sft(config, out_dir: Path, progress) -> tuple[dict, dict]:
    from dreamgym_cli.llm import sft
    from dreamgym_cli.rl.policy import save_policy, token_counter
    from dreamgym_cli.stages.train_agent import checkpoint_dir, remove_checkpoints
    from dreamgym_cli.stages.train_em import split_episodes

    episodes = sft_episodes(config)
    settings = policy_settings(config)

    def corpus() -> list[str]:  # a tiny tokenizer learns the very texts it will see
        rough = sft_pairs(episodes, settings, lambda text: len(text) // 4)
        return [p + c for p, c in rough]

    model, tokenizer, settings, tiny = load_start_model(config, corpus)
    train_eps, held_eps = split_episodes(episodes, 0.1, config.seed)
    examples = {name: [sft.encode_pair(tokenizer, p, c, 1024)
                       for p, c in sft_pairs(eps, settings, token_counter(tokenizer))]
                for name, eps in (("train", train_eps), ("heldout", held_eps))}
    lr = config.lr if config.lr is not None else (1e-3 if tiny else 2e-4)
    sft_settings = sft.SFTSettings(lr=lr, batch_size=config.batch_size, epochs=config.epochs,
                                   max_steps=config.max_steps, seed=config.seed,
                                   eval_every=max(1, config.max_steps or 50),
                                   checkpoint_every=100)
    from dreamgym_cli.scale.distributed import current

    metrics = sft.train(model, tokenizer, examples["train"], examples["heldout"], sft_settings,
                        checkpoint_dir=checkpoint_dir(config), resume=config.resume,
                        progress=progress, dist=current())
    if out_dir is None:  # a rank > 0 of a multi-process launch: rank 0 saves
        return metrics, {}
    save_policy(model, tokenizer, out_dir, settings)
    remove_checkpoints(config)
    curve = metrics.pop("curve")
    metrics.update({"episodes": len(episodes), "train_episodes": len(train_eps),
                    "heldout_episodes": len(held_eps)})
    return metrics, {"curve": curve}
