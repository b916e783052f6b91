"""Experience-model examples: one (prompt, completion) pair per real transition.

The prompt is what the dream env will show the model at that step (task, retrieved transitions,
recent history, current state, action); the completion is the training target (reasoning when
the model is trained with it, then next state, reward, done, success). Retrieval for a training
example never returns transitions of the example's own episode, so the model cannot learn to
copy the answer out of its context.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dreamgym_cli.experience.prompt import build_em_prompt, format_em_completion
from dreamgym_cli.schema import EpisodeRecord

EM_SETTINGS_FILE = "em.json"


@dataclasses.dataclass(frozen=True)
class EMSettings:
    """How an experience model builds its prompts; saved as em.json in the model dir."""

    retrieval_k: int = 3
    history: int = 2
    history_budget_tokens: int = 256
    reasoning: bool = True
    max_new_tokens: int = 320
    store: str | None = None  # the replay store retrieval reads from (absolute path)
    # Longest training example in tokens: the dream env cuts a prompt from the left to
    # max_length − max_new_tokens, as training cut it, so no token lands on an unseen position.
    max_length: int | None = None

    def save(self, directory: Path) -> None:
        (Path(directory) / EM_SETTINGS_FILE).write_text(json.dumps(dataclasses.asdict(self),
                                                                   indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "EMSettings":
        path = Path(directory) / EM_SETTINGS_FILE
        data = json.loads(path.read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True)
class Transition:
    """What the experience model sees and must predict at one step."""

    episode_id: str
    instruction: str
    history: tuple[tuple[str, str], ...]
    state: str
    action: str
    next_state: str
    reward: float
    done: bool
    success: bool | None
    reasoning: str | None


def transitions_from_episodes(episodes: Sequence[EpisodeRecord],
                              history: int) -> list[Transition]:
    """Real transitions with their last `history` (state, action) pairs."""
    out = []
    for task, episode, steps in episodes:
        for i, s in enumerate(steps):
            past = tuple((p["state"], p["action"]) for p in steps[max(0, i - history):i]) \
                if history > 0 else ()
            out.append(Transition(
                episode_id=episode["episode_id"], instruction=task["instruction"], history=past,
                state=s["state"], action=s["action"], next_state=s["next_state"],
                reward=float(s["reward"] or 0.0), done=bool(s["done"]), success=s["success"],
                reasoning=s.get("reasoning"),
            ))
    return out


def retrieve_grouped(store, queries: Sequence[dict], excludes: Sequence[frozenset[str]],
                     k: int, sources: Sequence[str] | None = None,
                     keys: str = "full") -> list[list[dict[str, Any]]]:
    """Top-k per query, each query excluding its own set of episode ids.

    Queries that share an exclusion set (the steps of one episode) go in one batched call.
    sources: keep only transitions of these sources (e.g. ("real",): the dream env's default,
    so its own synthetic output never comes back as context); the search widens until k are
    found or the store is exhausted. keys: the store's embedding keys searched (`store.embed`).
    """
    if k <= 0 or store is None:
        return [[] for _ in queries]
    groups: dict[frozenset[str], list[int]] = {}
    for i, ex in enumerate(excludes):
        groups.setdefault(frozenset(ex), []).append(i)
    out: list[list[dict[str, Any]]] = [[] for _ in queries]
    for ex, idx in groups.items():
        batch = [queries[i] for i in idx]
        found = _retrieve_from(store, batch, sorted(ex) or None, k, sources, keys)
        for i, rows in zip(idx, found):
            out[i] = rows
    return out


def _retrieve_from(store, queries: list[dict], exclude: list[str] | None, k: int,
                   sources: Sequence[str] | None, keys: str) -> list[list[dict[str, Any]]]:
    if sources is None:
        return store.retrieve(queries, k, exclude_episodes=exclude, keys=keys)
    wanted, fetch = set(sources), 4 * k
    while True:
        found = store.retrieve(queries, fetch, exclude_episodes=exclude, keys=keys)
        kept = [[r for r in rows if r.get("source") in wanted][:k] for rows in found]
        exhausted = all(len(rows) < fetch for rows in found)  # the store had no more to give
        if exhausted or all(len(rows) == k for rows in kept):
            return kept
        fetch *= 4


def retrieve_for(store, transitions: Sequence[Transition], k: int) -> list[list[dict[str, Any]]]:
    """Top-k retrieved transitions per example, excluding the example's own episode."""
    queries = [{"instruction": t.instruction, "state": t.state, "action": t.action}
               for t in transitions]
    return retrieve_grouped(store, queries, [frozenset({t.episode_id}) for t in transitions], k)


def build_pairs(transitions: Sequence[Transition], retrieved: Sequence[list[dict]],
                settings: EMSettings, count_tokens: Callable[[str], int]) -> list[tuple[str, str]]:
    """(prompt, completion) pairs for SFT of the experience model.

    A transition with an empty next state is no target (nothing to predict) and is left out.
    """
    pairs = []
    for t, ctx in zip(transitions, retrieved, strict=True):
        if not t.next_state.strip():
            continue
        prompt = build_em_prompt(t.instruction, ctx, list(t.history), t.state, t.action,
                                 history_budget_tokens=settings.history_budget_tokens,
                                 count_tokens=count_tokens)
        completion = format_em_completion(t.reasoning or "", t.next_state, t.reward, t.done,
                                          t.success, with_reasoning=settings.reasoning)
        pairs.append((prompt, completion))
    return pairs


def corpus_texts(transitions: Sequence[Transition]) -> list[str]:
    """The texts a tiny model's tokenizer is trained on: everything its prompts are made of."""
    from dreamgym_cli.experience.prompt import EM_PREAMBLE

    texts = [EM_PREAMBLE]
    seen_instructions: set[str] = set()
    for t in transitions:
        if t.instruction not in seen_instructions:
            seen_instructions.add(t.instruction)
            texts.append(t.instruction)
        texts += [t.state, t.action, t.next_state, t.reasoning or ""]
    return [x for x in texts if x]
