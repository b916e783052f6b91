"""The policy's prompt and its action parser (DESIGN §9).

Prompt: task, recent history (newest (state, action) pairs within a token budget), current state,
admissible actions (when the env lists them and the state does not already end in the same
`Actions: a | b | …` line, as TextWorld's does), then the answer format: `<think>…</think>` (with
`think=True`) and `<action>…</action>`. The same builder serves real and dream envs, so a policy
sees identical text in both (sim-to-real depends on it).

`parse_action` never raises. With `<action>` tags it takes their body; without, it falls back to
the first non-empty line after any `<think>` block and flags the format as invalid, so a sloppy
tiny model still acts (the env decides what the action does) and the miss is counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from dreamgym_cli.experience.prompt import fit_history, render_history_pair
from dreamgym_cli.experience.tags import ACTION, THINK, close_tag, open_tag, read_tags

AGENT_PREAMBLE = "You are an agent in a text environment. Choose the next action for the task."
ANSWER_WITH_THINKING = (
    f"Think step by step inside {open_tag(THINK)}…{close_tag(THINK)}, then give exactly one "
    f"action inside {open_tag(ACTION)}…{close_tag(ACTION)}."
)
ANSWER_WITHOUT_THINKING = f"Give exactly one action inside {open_tag(ACTION)}…{close_tag(ACTION)}."


@dataclasses.dataclass(frozen=True)
class ParsedAction:
    """The action to send to the env; `valid_format` is False when it had to be guessed."""

    action: str
    valid_format: bool
    thought: str | None


def build_agent_prompt(instruction: str, history: Sequence[tuple[str, str]], state: str,
                       admissible: Sequence[str] | None, *, think: bool,
                       history_budget_tokens: int, count_tokens: Callable[[str], int],
                       max_history_pairs: int | None = None) -> str:
    """The policy's prompt for one turn.

    history: this episode's earlier (state, action) pairs, oldest first; the newest pairs that fit
        `history_budget_tokens` (measured with `count_tokens`) are kept, whole pairs only.
    admissible: the env's admissible actions, or None when it has no such list (section omitted).
    """
    parts = [AGENT_PREAMBLE, f"## Task\n{instruction}"]
    kept = fit_history(history, render_history_pair, history_budget_tokens, count_tokens,
                       max_history_pairs)
    if kept:
        parts.append("## Recent history\n" + "\n\n".join(kept))
    parts.append(f"## Current state\n{state}")
    if admissible is not None and not _state_lists(state, admissible):
        listed = "\n".join(f"- {a}" for a in admissible) if admissible else "(none listed)"
        parts.append(f"## Admissible actions\n{listed}")
    parts.append("## Answer\n" + (ANSWER_WITH_THINKING if think else ANSWER_WITHOUT_THINKING))
    return "\n\n".join(parts) + "\n"


def _state_lists(state: str, admissible: Sequence[str]) -> bool:
    """True when the state's own `Actions:` line already lists exactly these actions."""
    last_line = state.rstrip("\n").rsplit("\n", 1)[-1]
    return bool(admissible) and last_line == "Actions: " + " | ".join(admissible)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def answer_text(action: str, thought: str | None, think: bool) -> str:
    """The answer the policy should give: what `parse_action` reads back as `action`."""
    if think:
        return f"<think>{(thought or '').strip()}</think>\n<action>{action}</action>"
    return f"<action>{action}</action>"


def parse_action(completion: str) -> ParsedAction:
    """The action in a policy completion; never raises.

    `<action>` body (whitespace collapsed to one line) → valid_format True when non-empty.
    No tags → the first non-empty line after the `<think>` block (a leading "Action:" dropped),
    valid_format False. Nothing usable → action "" and valid_format False.
    """
    if not isinstance(completion, str):
        return ParsedAction(action="", valid_format=False, thought=None)
    try:
        fields, ends = read_tags(completion)
    except Exception:  # noqa: BLE001 — never raises; read_tags is not expected to, but be sure
        return ParsedAction(action="", valid_format=False, thought=None)
    thought = fields[THINK].strip() if THINK in fields else None
    if ACTION in fields:
        action = _one_line(fields[ACTION])
        return ParsedAction(action=action, valid_format=bool(action), thought=thought)
    rest = completion[ends.get(THINK, 0):]
    for line in rest.splitlines():
        line = _one_line(line)
        if line.lower().startswith("action:"):
            line = line[len("action:"):].strip()
        if line:
            return ParsedAction(action=line, valid_format=False, thought=thought)
    return ParsedAction(action="", valid_format=False, thought=thought)
