"""The web abstract state and its actions for MiniWoB++, as pure functions over page elements.

An `Element` is one visible, actionable DOM element (miniwob's `ref` is its id). The state is the
paper's web format, the same lines after reset and after every step:

    Task: <the utterance>
    Feedback: <why the last action did nothing>        (only after an invalid action)
    [6] button: Ok
    [5] input_text: value "Jer"          (text inputs show their value, or: empty)
    [8] input_checkbox: DKkQH (checked)  (checkboxes/radios show their label and state)
    Status: done, success                (only when the episode is over; or: done, failure)

Actions are `click [id]` and `type [id] "text"` (typing replaces what the field holds).
Admissible actions: `click [id]` for every listed element, and `type [id] "v"` for every text
input and every quoted value miniwob's field extractor takes from the utterance.

The scripted expert (`expert_action`) reads the current elements, so it recovers from off-policy
moves (a wrong click, a wrong text); it knows the tasks in `EXPERT_TASKS` and says None elsewhere.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

TEXT_INPUTS = ("input_text", "input_password", "input_email", "input_search", "input_tel",
               "input_url", "input_number", "textarea")
TOGGLES = ("input_checkbox", "input_radio")
_ACTION = re.compile(r'^\s*(click|type)\s*\[\s*(-?\d+)\s*\]\s*(?:"(.*)")?\s*$', re.S)


@dataclasses.dataclass(frozen=True)
class Element:
    ref: int
    tag: str
    text: str  # visible text (for toggles: the label next to them)
    value: str | bool | None
    html_id: str = ""
    classes: str = ""

    def line(self) -> str:
        if self.tag in TEXT_INPUTS:
            shown = f'value "{self.value}"' if self.value else "empty"
        elif self.tag in TOGGLES:
            shown = f"{self.text} ({'checked' if self.value else 'unchecked'})".strip()
        else:
            shown = self.text
        return f"[{self.ref}] {self.tag}: {shown}"


def _collapse(text: object) -> str:
    return " ".join(str(text or "").split())


def elements_from_dom(dom: Sequence[dict]) -> list[Element]:
    """Visible, actionable elements from miniwob's `dom_elements` (document order).

    Kept: leaves with a positive ref (text pseudo-nodes have negative refs that change every
    step, so they cannot be acted on) and any button; dropped: zero-sized elements and empty
    structural leaves. A toggle takes the text of its label (the text nodes beside it).
    """
    by_parent: dict[int, list[dict]] = {}
    for raw in dom:
        by_parent.setdefault(int(raw["parent"]), []).append(raw)
    out = []
    for raw in dom:
        ref, tag = int(raw["ref"]), str(raw["tag"]).lower()
        leaf = bool(raw["flags"][3])
        if ref <= 0 or float(raw["width"][0]) <= 0 or float(raw["height"][0]) <= 0:
            continue
        if not leaf and tag != "button":
            continue
        text, value = _collapse(raw["text"]), raw["value"]
        if tag in TOGGLES:
            siblings = by_parent.get(int(raw["parent"]), [])
            text = _collapse(" ".join(str(s["text"]) for s in siblings if int(s["ref"]) < 0))
            value = str(value).lower() == "true"
        elif tag == "button" and not text:
            text = _collapse(" ".join(str(c["text"]) for c in by_parent.get(ref, [])))
        if not text and tag not in TEXT_INPUTS and tag not in TOGGLES and tag != "button":
            continue
        out.append(Element(ref, tag, text, value, str(raw["id"]), str(raw["classes"])))
    return out


def render_state(utterance: str, elements: Sequence[Element], *, feedback: str | None = None,
                 done: bool = False, success: bool = False) -> str:
    lines = [f"Task: {_collapse(utterance)}"]
    if feedback:
        lines.append(f"Feedback: {feedback}")
    if done:
        lines.append(f"Status: done, {'success' if success else 'failure'}")
    else:
        lines += [e.line() for e in elements]
    return "\n".join(lines)


def parse_action(action: str) -> tuple[str, int, str | None] | None:
    """'type [5] "Jo"' -> ('type', 5, 'Jo'); 'click [6]' -> ('click', 6, None); else None."""
    match = _ACTION.match(action or "")
    if not match:
        return None
    verb, ref, text = match.group(1), int(match.group(2)), match.group(3)
    if (verb == "type") != (text is not None):
        return None
    return verb, ref, text


def admissible_actions(elements: Sequence[Element], fields: Sequence[tuple[str, str]]) -> list[str]:
    values = [v for _, v in fields if isinstance(v, str) and v and '"' not in v]
    clicks = [f"click [{e.ref}]" for e in elements]
    types = [f'type [{e.ref}] "{v}"' for e in elements if e.tag in TEXT_INPUTS
             for v in dict.fromkeys(values)]
    return clicks + types


# ----------------------------------------------------------------------------------------------
# The scripted expert


def _field(fields: Sequence[tuple[str, str]], key: str) -> str | None:
    return next((v for k, v in fields if k == key), None)


def _click_text(elements: Sequence[Element], text: str | None, tags=None) -> str | None:
    for e in elements:
        if text is not None and e.text == text and (tags is None or e.tag in tags):
            return f"click [{e.ref}]"
    return None


def _submit(elements: Sequence[Element], label: str | None = None) -> str | None:
    buttons = [e for e in elements if e.tag == "button"]
    wanted = [b for b in buttons if label and b.text.lower() == label.lower()] or buttons
    return f"click [{wanted[0].ref}]" if wanted else None


def _fill_then_submit(elements: Sequence[Element], wanted: list[tuple[Element, str]],
                      button: str | None = None) -> str | None:
    for element, value in wanted:
        if element.value != value:
            return f'type [{element.ref}] "{value}"'
    return _submit(elements, button)


def _inputs(elements: Sequence[Element]) -> list[Element]:
    return [e for e in elements if e.tag in TEXT_INPUTS]


def _expert_forms(task: str, elements, fields) -> str | None:
    inputs = _inputs(elements)
    if task == "enter-text":
        return _fill_then_submit(elements, [(i, _field(fields, "target")) for i in inputs[:1]])
    if task == "enter-password":
        return _fill_then_submit(elements, [(i, _field(fields, "target")) for i in inputs])
    if task == "login-user":
        by_id = {e.html_id: e for e in inputs}
        if "username" not in by_id or "password" not in by_id:
            return None
        return _fill_then_submit(elements, [(by_id["username"], _field(fields, "username")),
                                            (by_id["password"], _field(fields, "password"))],
                                 "login")
    if task == "focus-text":
        return f"click [{inputs[0].ref}]" if inputs else None
    return None


def _expert_checkboxes(elements, fields) -> str | None:
    targets = {v for k, v in fields if k.startswith("target")}
    for box in (e for e in elements if e.tag == "input_checkbox"):
        if bool(box.value) != (box.text in targets):
            return f"click [{box.ref}]"
    return _submit(elements, "submit")


def expert_action(task: str, elements: Sequence[Element],
                  fields: Sequence[tuple[str, str]]) -> str | None:
    """The next action of the scripted expert for `task`, from the current elements."""
    if task in ("click-button", "click-test-2", "click-dialog-2"):
        return _click_text(elements, _field(fields, "target"), ("button",))
    if task == "click-link":
        return _click_text(elements, _field(fields, "target"), ("span", "a"))
    if task == "click-test":
        return _submit(elements)
    if task == "click-dialog":
        close = [e for e in elements if "titlebar-close" in e.classes]
        return f"click [{close[0].ref}]" if close else None
    if task == "click-checkboxes":
        return _expert_checkboxes(elements, fields)
    return _expert_forms(task, elements, fields)


EXPERT_TASKS = ("click-button", "click-checkboxes", "click-dialog", "click-dialog-2",
                "click-link", "click-test", "click-test-2", "enter-password", "enter-text",
                "focus-text", "login-user")
