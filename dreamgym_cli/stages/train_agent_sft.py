"""train-agent's `sft` algorithm (behaviour cloning on real episodes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dreamgym_cli.errors import InputError
from dreamgym_cli.rl.agent_prompt import answer_text
from dreamgym_cli.rl.start import checkpoint_dir, load_start_model, remove_checkpoints
from dreamgym_cli.schema import EpisodeRecord


def sft_pairs(episodes: Sequence[EpisodeRecord], settings, count_tokens) -> list[tuple[str, str]]:
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


def select_sft_episodes(episodes: Sequence[EpisodeRecord], which: str) -> list[EpisodeRecord]:
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
                out.append(EpisodeRecord(task, episode, clean))
        return out
    return list(episodes)


def sft_episodes(config) -> list[EpisodeRecord]:
    from dreamgym_cli.experience.episodes import load_real_episodes
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
    from dreamgym_cli.experience.episodes import split_episodes

    episodes = sft_episodes(config)

    def corpus(settings) -> list[str]:  # a tiny tokenizer learns the very texts it will see
        rough = sft_pairs(episodes, settings, lambda text: len(text) // 4)
        return [p + c for p, c in rough]

    model, tokenizer, settings, tiny = load_start_model(config, corpus)
    train_eps, held_eps = split_episodes(episodes, 0.1, config.seed)
    examples = {name: [sft.encode_pair(tokenizer, p, c, 1024)
                       for p, c in sft_pairs(eps, settings, token_counter(tokenizer))]
                for name, eps in (("train", train_eps), ("heldout", held_eps))}
    from dreamgym_cli.scale.distributed import current

    metrics = sft.train(model, tokenizer, examples["train"], examples["heldout"],
                        config.sft_settings(tiny),
                        checkpoint_dir=checkpoint_dir(config.out), resume=config.resume,
                        progress=progress, dist=current())
    if out_dir is None:  # a rank > 0 of a multi-process launch: rank 0 saves
        return metrics, {}
    save_policy(model, tokenizer, out_dir, settings)
    remove_checkpoints(config.out)
    curve = metrics.pop("curve")
    metrics.update({"episodes": len(episodes), "train_episodes": len(train_eps),
                    "heldout_episodes": len(held_eps)})
    return metrics, {"curve": curve}
