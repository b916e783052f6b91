"""Real episodes as the learners read them: the store's real episodes with their reasoning
overlaid from the `annotations` table, and a seeded train/held-out split by episode id.

`train-em` and `train-agent --algo sft` both read their data through here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from dreamgym_cli.schema import EpisodeRecord

ANNOTATIONS = "annotations"  # the store table `annotate` writes: step content_hash -> reasoning


def load_reasoning(store) -> dict[str, str]:
    """step content_hash -> reasoning, the latest annotation winning."""
    table = store.read_table(ANNOTATIONS)
    if table is None or table.num_rows == 0:
        return {}
    table = table.sort_by([("created_at", "ascending")])
    out: dict[str, str] = {}
    for h, r in zip(table.column("content_hash").to_pylist(),
                    table.column("reasoning").to_pylist()):
        if r:
            out[h] = r
    return out


def load_real_episodes(store) -> list[EpisodeRecord]:
    """Real episodes with steps; reasoning from the store's annotations where the step has none."""
    reasoning = load_reasoning(store)
    episodes = []
    for task, episode, steps in store.iter_episodes(where="source = 'real'"):
        if task is None or not steps:
            continue
        steps = [dict(s, reasoning=s.get("reasoning") or reasoning.get(s["content_hash"]))
                 for s in steps]
        episodes.append(EpisodeRecord(task, episode, steps))
    return episodes


def is_heldout(episode_id: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{episode_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_episodes(episodes: Sequence[EpisodeRecord], fraction: float, seed: int
                   ) -> tuple[list[EpisodeRecord], list[EpisodeRecord]]:
    """(train, heldout) by episode; at least one of each when there are two or more episodes."""
    train = [e for e in episodes if not is_heldout(e[1]["episode_id"], fraction, seed)]
    held = [e for e in episodes if is_heldout(e[1]["episode_id"], fraction, seed)]
    if fraction > 0 and not held and len(train) >= 2:
        held, train = train[-1:], train[:-1]
    if not train and held:
        train, held = held, []
    return train, held
