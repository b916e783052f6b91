"""The fixed tags of model completions, and a tag reader that never raises.

One place names every tag that a model writes — the experience model's `<think>`, `<next_state>`,
`<reward>`, `<done>`, `<success>`, the policy's `<action>` and the curriculum's `<task>` — so the
prompt, the training target and the parsers cannot drift apart.

Reading is a single left-to-right scan over tag markers (linear in the text, safe on any input):
a field is the body between an opening tag and the first closing tag of the same name after it;
markers inside a body that was read are part of that body (a `<think>` that mentions
`<next_state>` does not start a next state); the first occurrence of a field wins over duplicates;
a missing closing tag is tolerated — the body then ends at the next opening tag of a known field
or at the end of the text (generation often stops *at* the closing tag).
"""

from __future__ import annotations

import bisect
import re

THINK = "think"
NEXT_STATE = "next_state"
REWARD = "reward"
DONE = "done"
SUCCESS = "success"
ACTION = "action"
TASK = "task"  # a task variation written by the experience model (curriculum)
ALL_TAGS = (THINK, NEXT_STATE, REWARD, DONE, SUCCESS, ACTION, TASK)

# re.ASCII: case-insensitive for ASCII only (without it 'ſ' would match 's' and 'K' (Kelvin) 'k').
_MARKER = re.compile(r"<(/?)(" + "|".join(ALL_TAGS) + r")>", re.IGNORECASE | re.ASCII)


def open_tag(name: str) -> str:
    return f"<{name}>"


def close_tag(name: str) -> str:
    return f"</{name}>"


def wrap(name: str, body: str) -> str:
    """`<name>body</name>`."""
    return f"{open_tag(name)}{body}{close_tag(name)}"


def neutralize(text: str) -> str:
    """Text with every tag marker defused (`<done>` → `< done>`) so it can sit inside a tag.

    A state or a reasoning that literally contains `</next_state>` would otherwise end its field
    early when read back; `< done>` is not a marker for the reader.
    """
    return _MARKER.sub(lambda m: "< " + m.group(0)[1:], text)


def read_tags(text: str) -> tuple[dict[str, str], dict[str, int]]:
    """({field: body}, {field: end offset of that field in `text`}) for the first of each field.

    Bodies are returned as written (not stripped). Never raises on a str.
    """
    markers = [(m.start(), m.end(), bool(m.group(1)), m.group(2).lower())
               for m in _MARKER.finditer(text)]
    # Index lookups keep the scan linear-ish even on adversarial tag soup (no rescans).
    closes: dict[str, list[int]] = {}
    for idx, (_, _, is_close, name) in enumerate(markers):
        if is_close:
            closes.setdefault(name, []).append(idx)
    next_open = [len(markers)] * (len(markers) + 1)
    for idx in range(len(markers) - 1, -1, -1):
        next_open[idx] = next_open[idx + 1] if markers[idx][2] else idx
    fields: dict[str, str] = {}
    ends: dict[str, int] = {}
    i = next_open[0]
    while i < len(markers):
        _, body_start, _, name = markers[i]
        name_closes = closes.get(name, [])
        pos = bisect.bisect_right(name_closes, i)
        if pos < len(name_closes):  # closed: the body ends at the first matching closing tag
            j = name_closes[pos]
            body_end, field_end, following = markers[j][0], markers[j][1], j + 1
        else:  # unclosed: the body ends at the next opening tag of any field, or the text's end
            k = next_open[i + 1]
            body_end = field_end = markers[k][0] if k < len(markers) else len(text)
            following = k
        if name not in fields:
            fields[name] = text[body_start:body_end]
            ends[name] = field_end
        i = next_open[following]
    return fields, ends
