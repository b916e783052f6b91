"""The offline, deterministic annotator: reasoning that explains one observed transition.

`dreamgym annotate` without a teacher fills the `reasoning` column with this text. It states only
what can be read off the transition — never a guess: where the agent moved, which items it gained
or lost, which objects appeared or vanished, what the game replied, why the score changed, why an
action had no effect, why the episode ended. Same input → same text.

It reads the abstract state that env adapters render (TextWorld's, one field per line):

    Feedback: <what the game said after the action>      (absent in the initial state)
    Location: <room name>
    Description: <room description>                       (may be absent)
    Exits: <directions out, comma-separated>                 (may be absent)
    Objects: <visible objects, comma-separated, or "none">     (may be absent)
    Inventory: <comma-separated items, or "nothing">
    Actions: <admissible commands separated by " | ">

A state of any other form is compared as raw text.
"""

from __future__ import annotations

import math
import re
from typing import Any

STATE_FIELDS = ("feedback", "location", "description", "exits", "objects", "inventory",
                "actions")
LIST_FIELDS = {"objects": (",", {"none", "nothing"}), "inventory": (",", {"nothing", "none"}),
               "actions": ("|", set())}
_FIELD_LINE = re.compile(r"^(" + "|".join(STATE_FIELDS) + r"):[ \t]?(.*)$", re.I | re.ASCII)
_ARTICLE = re.compile(r"^(a|an|the|some)\s+", re.I)

# Replies of TextWorld's (Inform 7) parser when it refuses an action or does not understand it.
REFUSALS = (
    "you can't", "you cannot", "that's not a verb i recognise", "i didn't understand",
    "i don't understand", "i only understood you as far as", "you see no", "you don't see",
    "that's not something you can", "you aren't carrying",
    "you haven't got", "you need to", "is locked", "seems to be locked", "fixed in place",
    "i beg your pardon", "nothing happens", "there is nothing", "you're not",
)
LOSS_MARKERS = ("you lost", "*** you lost")
GOAL_CHARS = 160  # how much of the instruction a positive-reward sentence quotes
FEEDBACK_CHARS = 120


def parse_abstract_state(text: str) -> dict[str, Any]:
    """The fields of an abstract state; missing ones are None.

    Returns {"structured": bool (any field line found), "raw": text, "feedback", "location",
    "description": str | None, "objects", "inventory", "actions": list[str] | None}. A line that is
    not a field line continues the previous field (multi-line feedback or description).
    """
    text = text if isinstance(text, str) else ""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        match = _FIELD_LINE.match(line)
        if match:
            current = match.group(1).lower()
            if current in found:  # a repeated field starts over; the last one wins
                found[current] = []
            found.setdefault(current, []).append(match.group(2).strip())
        elif current is not None:
            found[current].append(line.strip())
    state: dict[str, Any] = {"structured": bool(found), "raw": text}
    for name in STATE_FIELDS:
        value = "\n".join(part for part in found.get(name, []) if part) if name in found else None
        if name in LIST_FIELDS and value is not None:
            sep, empty_words = LIST_FIELDS[name]
            items = [item.strip() for item in value.replace("\n", " ").split(sep)]
            items = [item for item in items if item]
            value = [] if len(items) == 1 and items[0].lower().rstrip(".") in empty_words else items
        state[name] = value
    return state


def _key(item: str) -> str:
    """Comparable form of an item name: 'a Red key.' and 'red key' are the same item."""
    return _ARTICLE.sub("", " ".join(item.lower().split())).rstrip(".")


def _difference(new: list[str], old: list[str]) -> list[str]:
    """Items of `new` (in its order, first spelling) absent from `old`, compared by `_key`."""
    old_keys = {_key(item) for item in old}
    out, seen = [], set()
    for item in new:
        if _key(item) not in old_keys and _key(item) not in seen:
            seen.add(_key(item))
            out.append(item)
    return out


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut + "…"


def _number(value: float) -> str:
    return f"{value:g}"


def _gains_and_losses(before: list, after: list, gained: str, lost: str) -> list[str]:
    """The `gained` sentence for what `after` adds to `before`, the `lost` one for what it
    drops (each template's {} takes the listing); none for an empty change."""
    changes = ((_difference(after, before), gained), (_difference(before, after), lost))
    return [template.format(_listing(items)) for items, template in changes if items]


def _world_changes(before: dict, after: dict) -> list[str]:
    """Sentences on movement, inventory and visible objects (structured states only)."""
    sentences = []
    moved = before["location"] and after["location"] and before["location"] != after["location"]
    if moved:
        sentences.append(f"The agent moved from {before['location']} to {after['location']}.")
        if after["objects"]:
            sentences.append(f"In {after['location']} it sees {_listing(after['objects'])}.")
    if before["inventory"] is not None and after["inventory"] is not None:
        sentences += _gains_and_losses(before["inventory"], after["inventory"],
                                       "The agent now carries {}.",
                                       "The agent no longer carries {}.")
    if not moved and before["objects"] is not None and after["objects"] is not None:
        sentences += _gains_and_losses(before["objects"], after["objects"],
                                       "Now visible: {}.", "No longer visible: {}.")
    if (not moved and before["description"] and after["description"]
            and before["description"] != after["description"]):
        sentences.append("The room description changed.")
    return sentences


def _unchanged(before: dict, after: dict) -> bool:
    """Nothing but the feedback (and the command list) differs between the two states."""
    if not (before["structured"] and after["structured"]):
        return before["raw"].strip() == after["raw"].strip()
    keys = ("location", "description", "objects", "inventory")
    return all(before[k] == after[k] for k in keys)


def _no_effect_reason(action: str, before: dict, after: dict) -> str:
    feedback = (after["feedback"] or "").lower()
    if any(marker in feedback for marker in REFUSALS):
        return "The game refused the action, so nothing in the world changed."
    admissible = before["actions"]
    if admissible and _key(action) not in {_key(a) for a in admissible}:
        return (f"'{action}' is not one of the admissible commands, so nothing in the world "
                "changed.")
    return ("The action changed neither the location, the inventory nor the visible objects; "
            "it only produced the game's reply.")


def _reward_sentence(instruction: str, reward: float | None) -> str:
    if reward is None or not math.isfinite(reward):
        return "The reward is unknown."
    if reward > 0:
        return (f"The score went up by {_number(reward)}: this action was progress toward the "
                f"goal \"{_clip(instruction, GOAL_CHARS)}\"")
    if reward < 0:
        return f"The reward is {_number(reward)}: the action was penalised."
    return "No points were scored (reward 0)."


def _ending_sentence(after: dict, done: bool, success: bool | None) -> str:
    if not done:
        return "The episode continues."
    if success:
        return "The episode ended because the goal was achieved."
    if success is None:
        return "The episode ended."
    said = ((after["feedback"] or "") + "\n" + after["raw"]).lower()
    if any(marker in said for marker in LOSS_MARKERS):
        return "The episode ended in failure: the game was lost."
    return ("The episode ended without success and without the game declaring a win or a loss, "
            "so the step limit was reached.")


def explain_transition(instruction: str, state: str, action: str, next_state: str,
                       reward: float | None, done: bool, success: bool | None) -> str:
    """A few deterministic sentences explaining what `action` did, read off the two states."""
    before, after = parse_abstract_state(state), parse_abstract_state(next_state)
    sentences = [f"The agent's action was '{action}'."]
    if before["structured"] and after["structured"]:
        sentences += _world_changes(before, after)
    elif before["raw"].strip() != after["raw"].strip():
        sentences.append("The observation changed.")
    if after["feedback"]:
        sentences.append(f"The game replied: \"{_clip(after['feedback'], FEEDBACK_CHARS)}\"")
    if _unchanged(before, after) and not reward and not done:
        sentences.append(_no_effect_reason(action, before, after))
    sentences.append(_reward_sentence(instruction, reward))
    sentences.append(_ending_sentence(after, done, success))
    return " ".join(sentences)
