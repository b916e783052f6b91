"""The experience model's prompt and its completion format (DESIGN §7).

Prompt sections, in this order (empty optional sections are left out):

    ## Task                          the task instruction
    ## Similar past transitions      top-k retrieved: where, action → the game's reply, reward, done
    ## Recent history                the last (state, action) pairs that fit a token budget
    ## Current state
    ## Action

Completion (the training target, and what the parser reads back):

    <think>reasoning</think>
    <next_state>…</next_state>
    <reward>1.0</reward>
    <done>true</done>
    <success>true|false|unknown</success>

A retrieved transition is shown in brief — its state's `Location:` line (else its first line),
the action, its next state's first line (TextWorld's `Feedback:`), reward and done — not as two
whole states: what a similar action did and paid is what the model needs from it, and whole
states made prompts longer than a small model's training length.

`with_reasoning=False` (the paper's "w/o reasoning" ablation) leaves the `<think>` block out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from dreamgym_cli.experience.tags import (DONE, NEXT_STATE, REWARD, SUCCESS, THINK, neutralize,
                                          wrap)

EM_PREAMBLE = (
    "You simulate a text environment. Given the task, similar past transitions, the recent "
    "history, the current state and the agent's action, first reason about what the action does, "
    "then write the next state, the reward, whether the episode is done and whether the task "
    "succeeded, each in its tag."
)
UNKNOWN = "unknown"  # how a null success (or reward in retrieved examples) is written


def format_bool(value: bool | None) -> str:
    """'true' / 'false' / 'unknown' (for None)."""
    return UNKNOWN if value is None else ("true" if value else "false")


def format_reward(value: float | None) -> str:
    """A reward as text that reads back to the same float (repr round-trips exactly)."""
    return UNKNOWN if value is None else repr(float(value))


def fit_history(history: Sequence[tuple[str, str]], render: Callable[[int, str, str], str],
                budget_tokens: int, count_tokens: Callable[[str], int],
                max_pairs: int | None = None) -> list[str]:
    """Rendered (state, action) pairs, newest kept first, whole pairs only, within the budget.

    `render(offset, state, action)` renders one pair; offset is how many steps before the current
    one it happened (1 = the previous step). Pairs are dropped from the oldest end until the sum of
    `count_tokens` over the kept rendered pairs is ≤ `budget_tokens`; returned oldest first.
    """
    pairs = list(history)
    if max_pairs is not None:
        pairs = pairs[max(0, len(pairs) - max_pairs):] if max_pairs > 0 else []
    kept: list[str] = []
    used = 0
    for offset, (state, action) in enumerate(reversed(pairs), start=1):
        text = render(offset, state, action)
        cost = count_tokens(text)
        if used + cost > budget_tokens:
            break  # an older pair never jumps a newer one that did not fit
        kept.append(text)
        used += cost
    return kept[::-1]


BRIEF_CHARS = 240  # longest line of a retrieved transition


def brief_line(text: str | None, prefer: str | None = None) -> str:
    """One line of a state: the first starting with `prefer` (else the first), cut to BRIEF_CHARS."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    chosen = next((line for line in lines if prefer and line.startswith(prefer)),
                  lines[0] if lines else "")
    return chosen if len(chosen) <= BRIEF_CHARS else chosen[:BRIEF_CHARS - 1].rstrip() + "…"


def _render_retrieved(index: int, row: dict[str, Any]) -> str:
    return (
        f"### Example {index}\n"
        f"State: {brief_line(row.get('state'), 'Location:')}\n"
        f"Action: {row.get('action', '')}\n"
        f"Result: {brief_line(row.get('next_state'))}\n"
        f"Reward: {format_reward(row.get('reward'))}\n"
        f"Done: {format_bool(row.get('done'))}"
    )


def render_history_pair(offset: int, state: str, action: str) -> str:
    """One history entry, shared by the experience-model and the agent prompts."""
    return f"### {offset} step{'s' if offset > 1 else ''} ago\nState:\n{state}\nAction: {action}"


def build_em_prompt(instruction: str, retrieved: Sequence[dict[str, Any]],
                    history: Sequence[tuple[str, str]], state: str, action: str, *,
                    history_budget_tokens: int, count_tokens: Callable[[str], int],
                    max_history_pairs: int | None = None) -> str:
    """The experience model's prompt for one step (sections in the order of DESIGN §7).

    retrieved: store rows with `state`, `action`, `next_state`, `reward`, `done` (most similar
        first); an empty list leaves the section out (`--retrieval-k 0`).
    history: this episode's earlier (state, action) pairs, oldest first; the newest pairs that fit
        `history_budget_tokens` (as measured by `count_tokens`) are kept, whole pairs only.
    """
    parts = [EM_PREAMBLE, f"## Task\n{instruction}"]
    if retrieved:
        examples = [_render_retrieved(i, row) for i, row in enumerate(retrieved, start=1)]
        parts.append("## Similar past transitions\n" + "\n\n".join(examples))
    kept = fit_history(history, render_history_pair, history_budget_tokens, count_tokens,
                       max_history_pairs)
    if kept:
        parts.append("## Recent history\n" + "\n\n".join(kept))
    parts.append(f"## Current state\n{state}")
    parts.append(f"## Action\n{action}")
    return "\n\n".join(parts) + "\n"


def canonical_body(text: str) -> str:
    """What a field body becomes in a completion (and reads back as): tags defused, stripped."""
    return neutralize(text).strip()


def format_em_completion(reasoning: str | None, next_state: str, reward: float, done: bool,
                         success: bool | None, *, with_reasoning: bool = True) -> str:
    """The training target: `<think>…</think>\\n<next_state>…</next_state>\\n<reward>…` etc.

    Bodies are canonicalized (`canonical_body`), so `parse_em_completion` returns exactly them.
    Raises ValueError for an empty next state or a non-finite reward: such a row is no target.
    """
    state_body = canonical_body(next_state)
    if not state_body:
        raise ValueError("format_em_completion: next_state is empty")
    if reward is None or not math.isfinite(float(reward)):
        raise ValueError(f"format_em_completion: reward must be a finite number, got {reward!r}")
    lines = []
    if with_reasoning:
        lines.append(wrap(THINK, canonical_body(reasoning or "")))
    lines += [
        wrap(NEXT_STATE, state_body),
        wrap(REWARD, format_reward(reward)),
        wrap(DONE, format_bool(bool(done))),
        wrap(SUCCESS, format_bool(success)),
    ]
    return "\n".join(lines)
