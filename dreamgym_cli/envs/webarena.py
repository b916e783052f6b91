"""WebArena-Lite through BrowserGym: `--env webarena` (the user runs the WebArena sites).

The agent sees the paper's web state: the page URL, then one line per kept element of the
accessibility tree, `[bid] role: name`, where `bid` is BrowserGym's element id. The tree comes as
BrowserGym's `axtree_object` (Chrome DevTools' `Accessibility.getFullAXTree` nodes, each marked
with a `browsergym_id`; see `browsergym.utils.obs.flatten_axtree_to_str` for BrowserGym's own
rendering) plus `extra_element_properties` (`{bid: {"visibility", "clickable", ...}}`).

Which elements are kept (the paper keeps the 3-10 most relevant): every element with a bid and a
name (or a value; paragraphs, headings, cells and the like take the text of their StaticText
children), that is not hidden (visibility >= 0.5 where known) and not plain text itself
(StaticText, InlineTextBox, LineBreak, generic containers). Each is scored: +2 per word it shares
with the task intent, +1 if its role is one an agent acts on (link, button, textbox, ...). The
`keep` best (default 10) are kept, and at least `min_keep` (3) even when nothing overlaps, ties
broken by page order; the kept lines are printed in page order.

Our actions → BrowserGym's high-level actions (browsergym.core.action.functions):
    click [12]             → click("12")           type [12] "text"  → fill("12", "text")
    hover [12]             → hover("12")           select [12] "opt" → select_option("12", "opt")
    press [Enter]          → keyboard_press("Enter")
    scroll [down] / [up]   → scroll(0, 500) / scroll(0, -500)
    goto "url"             → goto("url")           go_back / go_forward → go_back() / go_forward()
    new_tab / close_tab    → new_tab() / tab_close()   tab_focus [1] → tab_focus(1)
    stop "answer"          → send_msg_to_user("answer")  (WebArena checks the answer then)
Arguments may be written "quoted" or [bracketed] (WebArena's own style). An action that does not
parse costs a step and leaves the page as it was, with feedback saying why.

The WebArena sites are named by BrowserGym's `WA_*` environment variables; a missing one is an
InputError before any browser starts. `browsergym-webarenalite` pins transformers 4.x, so it lives
in its own environment (docs/environments.md); `browsergym-core` alone (the `browser` extra)
runs `BrowserGymEnv` on any page, which is how the tests run the loop on local file:// pages.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamgym_cli.envs.base import Observation, StepResult, check_step_limit, check_task_env
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task

ENV_NAME = "webarena"
WA_VARS = ("WA_SHOPPING", "WA_SHOPPING_ADMIN", "WA_REDDIT", "WA_GITLAB", "WA_WIKIPEDIA",
           "WA_MAP", "WA_HOMEPAGE")
INTERACTIVE_ROLES = frozenset({
    "button", "link", "textbox", "searchbox", "combobox", "checkbox", "radio", "menuitem",
    "option", "tab", "switch", "slider", "spinbutton", "listbox", "menuitemcheckbox",
    "menuitemradio", "treeitem", "textarea"})
CONTENT_ROLES = frozenset({  # nameless in the tree, their text is in StaticText children
    "paragraph", "heading", "listitem", "cell", "gridcell", "rowheader", "columnheader",
    "status", "alert", "note", "label", "caption", "term", "definition", "blockquote"})
TEXT_ROLES = frozenset({"StaticText", "InlineTextBox", "LineBreak", "generic", "none",
                        "RootWebArea", "WebArea", "ignored"})
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset("a an the of to in on for and or is are be me my i you your what which "
                       "how with from by at it this that".split())


@dataclasses.dataclass(frozen=True)
class Element:
    bid: str
    role: str
    name: str
    value: str | None = None

    def line(self) -> str:
        text = " ".join(self.name.split())
        if self.value:
            text = f"{text} (value: {' '.join(self.value.split())})" if text else self.value
        return f"[{self.bid}] {self.role}: {text}"


# ---- accessibility tree → state --------------------------------------------------------------


def axtree_elements(axtree: dict, extra_properties: dict | None = None) -> list[Element]:
    """Named, visible, non-text elements with a bid, in page (tree) order."""
    nodes = axtree.get("nodes") or []
    by_id = {n.get("nodeId"): n for n in nodes}
    child_ids = {c for n in nodes for c in n.get("childIds", ())}
    roots = [n for n in nodes if n.get("nodeId") not in child_ids] or nodes[:1]
    out, seen = [], set()
    stack = list(reversed(roots))
    while stack:  # depth-first, children in order
        node = stack.pop()
        if node.get("nodeId") in seen:
            continue
        seen.add(node.get("nodeId"))
        element = _element(node, extra_properties or {}, by_id)
        if element is not None:
            out.append(element)
        stack.extend(by_id[c] for c in reversed(node.get("childIds", ())) if c in by_id)
    return out


def _element(node: dict, extra_properties: dict, by_id: dict) -> Element | None:
    bid = node.get("browsergym_id")
    role = (node.get("role") or {}).get("value") or ""
    if bid is None or node.get("ignored") or role in TEXT_ROLES:
        return None
    name = str((node.get("name") or {}).get("value") or "").strip()
    if not name and role in CONTENT_ROLES:  # a paragraph's words live in its text nodes
        name = _descendant_text(node, by_id)[:200]
    value = (node.get("value") or {}).get("value")
    value = None if value in (None, "") else str(value)
    if not name and value is None and role not in INTERACTIVE_ROLES:
        return None
    visibility = (extra_properties.get(str(bid)) or {}).get("visibility")
    if visibility is not None and visibility < 0.5:
        return None
    return Element(str(bid), role, name, value)


def _descendant_text(node: dict, by_id: dict) -> str:
    parts, stack = [], list(reversed(node.get("childIds", ())))
    while stack and len(parts) < 50:
        child = by_id.get(stack.pop())
        if child is None:
            continue
        if (child.get("role") or {}).get("value") == "StaticText":
            parts.append(str((child.get("name") or {}).get("value") or ""))
        else:
            stack.extend(reversed(child.get("childIds", ())))
    return " ".join(" ".join(parts).split())


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def relevant_elements(elements: list[Element], intent: str, keep: int = 10,
                      min_keep: int = 3) -> list[Element]:
    """The `keep` most relevant elements (module doc), at least `min_keep`, in page order."""
    goal = _words(intent)

    def score(e: Element) -> int:
        return 2 * len(goal & _words(f"{e.name} {e.value or ''}")) + (e.role in INTERACTIVE_ROLES)

    ranked = sorted(range(len(elements)), key=lambda i: (-score(elements[i]), i))
    chosen = [i for i in ranked if score(elements[i]) > 0][:keep]
    if len(chosen) < min_keep:
        chosen += [i for i in ranked if i not in chosen][:min_keep - len(chosen)]
    return [elements[i] for i in sorted(chosen)]


def render_web_state(axtree: dict, intent: str, *, url: str | None = None,
                     extra_properties: dict | None = None, feedback: str | None = None,
                     keep: int = 10, min_keep: int = 3) -> str:
    lines = [] if feedback is None else [f"Feedback: {' '.join(feedback.split())}"]
    if url:
        lines.append(f"URL: {url}")
    kept = relevant_elements(axtree_elements(axtree, extra_properties), intent, keep, min_keep)
    lines += [e.line() for e in kept]
    return "\n".join(lines)


# ---- our actions → BrowserGym actions --------------------------------------------------------


class ActionError(ValueError):
    """An action the web env cannot translate (the agent's mistake: costs a step)."""


_ARG = r'(?:"((?:[^"\\]|\\.)*)"|\[([^\]]*)\])'  # "quoted" or [bracketed]
_ACTION = re.compile(rf"^\s*([a-z_]+)((?:\s*{_ARG})*)\s*$", re.S)


def _arguments(text: str) -> list[str]:
    out = []
    for quoted, bracketed in re.findall(_ARG, text):
        out.append(json.loads(f'"{quoted}"') if quoted or not bracketed else bracketed)
    return out


def _call(name: str, *args: Any) -> str:
    return f"{name}({', '.join(json.dumps(a) for a in args)})"


def translate_action(action: str) -> str:
    """BrowserGym's action string for one of ours (module doc); ActionError when it can't."""
    match = _ACTION.match(action or "")
    if not match:
        raise ActionError(f"cannot parse action {action!r}; expected e.g. click [12]")
    verb, args = match.group(1), _arguments(match.group(2))
    need = {"click": 1, "hover": 1, "type": 2, "fill": 2, "select": 2, "press": 1, "goto": 1,
            "stop": 1, "tab_focus": 1, "scroll": (0, 1), "go_back": 0, "go_forward": 0,
            "new_tab": 0, "close_tab": 0}
    if verb not in need:
        raise ActionError(f"unknown action {verb!r}; expected one of {', '.join(sorted(need))}")
    counts = need[verb] if isinstance(need[verb], tuple) else (need[verb],)
    if len(args) not in counts and not (verb in ("type", "stop") and len(args) >= counts[0]):
        raise ActionError(f"{verb} takes {need[verb]} argument(s), got {len(args)}")
    if verb == "click" or verb == "hover":
        return _call(verb, args[0])
    if verb in ("type", "fill"):
        return _call("fill", args[0], args[1])  # WebArena's [press_enter_after] is dropped
    if verb == "select":
        return _call("select_option", args[0], args[1])
    if verb == "press":
        return _call("keyboard_press", args[0])
    if verb == "scroll":
        direction = (args[0] if args else "down").strip().lower()
        if direction not in ("up", "down"):
            raise ActionError(f"scroll takes [up] or [down], got {direction!r}")
        return _call("scroll", 0, 500 if direction == "down" else -500)
    if verb == "goto":
        return _call("goto", args[0])
    if verb == "stop":
        return _call("send_msg_to_user", args[0])
    if verb == "tab_focus":
        if not args[0].strip().isdigit():
            raise ActionError(f"tab_focus takes a tab number, got {args[0]!r}")
        return _call("tab_focus", int(args[0]))
    return {"go_back": "go_back()", "go_forward": "go_forward()", "new_tab": "new_tab()",
            "close_tab": "tab_close()"}[verb]


# ---- the envs --------------------------------------------------------------------------------


def check_webarena_urls(environ: dict | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    missing = [v for v in WA_VARS if not environ.get(v)]
    if missing:
        raise InputError(f"WebArena needs the URLs of your WebArena sites in {', '.join(missing)} "
                         f"(all of {', '.join(WA_VARS)} must be set)", field="env")
    return {v: environ[v] for v in WA_VARS}


def use_system_chromium() -> None:
    """Point Playwright at Debian's chromium when its own browser was never downloaded."""
    if os.environ.get("PLAYWRIGHT_BROWSERS_PATH"):
        return
    system = shutil.which("chromium") or shutil.which("chromium-browser")
    if system is None:
        return
    import playwright

    browsers = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    revision = next(b["revision"] for b in json.loads(browsers.read_text())["browsers"]
                    if b["name"] == "chromium")
    if (Path.home() / ".cache" / "ms-playwright" / f"chromium-{revision}").is_dir():
        return
    home = Path(os.environ.get("DREAMGYM_HOME") or Path.home() / ".dreamgym")
    link = home / "playwright" / f"chromium-{revision}" / "chrome-linux" / "chrome"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(system)
    os.environ["PLAYWRIGHT_BROWSERS_PATH"] = str(home / "playwright")


class BrowserGymEnv:
    """Any BrowserGym task as an env: `task_factory(task) -> (task class, task kwargs)`."""

    name = "browsergym"

    def __init__(self, task_factory: Callable[[Task], tuple[type, dict]], *,
                 max_steps: int | None = None, keep: int = 10, min_keep: int = 3,
                 headless: bool = True, timeout_ms: int | None = None):
        check_step_limit(max_steps)
        self.task_factory, self.max_steps, self.keep, self.min_keep = task_factory, max_steps, \
            keep, min_keep
        self.headless, self.timeout_ms = headless, timeout_ms
        self._env = None
        self._obs: dict = {}  # BrowserGym's last observation
        self._intent, self._t, self._limit, self._done = "", 0, 50, True

    def _render(self, obs: dict, feedback: str | None = None) -> Observation:
        text = render_web_state(obs["axtree_object"], self._intent, url=obs.get("url"),
                                extra_properties=obs.get("extra_element_properties"),
                                feedback=feedback, keep=self.keep, min_keep=self.min_keep)
        return Observation(text, None, {"url": obs.get("url"), "instruction": self._intent,
                                        "last_action_error": obs.get("last_action_error") or None})

    def reset(self, task: Task) -> Observation:
        from browsergym.core.env import BrowserEnv

        use_system_chromium()
        entry, kwargs = self.task_factory(task)
        self.close()
        self._env = BrowserEnv(task_entrypoint=entry, task_kwargs=kwargs, headless=self.headless,
                               timeout=self.timeout_ms)
        obs, _ = self._env.reset(seed=int(task.spec.get("seed", 0)))
        self._obs, self._intent = obs, obs.get("goal") or task.instruction
        self._t, self._done = 0, False
        self._limit = self.max_steps or int(task.spec.get("max_steps") or 30)
        return self._render(obs)

    def step(self, action: str) -> StepResult:
        if self._env is None or self._done:
            raise RuntimeError("the episode is over (or never started): call reset(task) first")
        self._t += 1
        try:
            command: str | None = translate_action(action)
        except ActionError as e:  # the page stays as it was; the step is spent
            command, reward, ended, error = None, 0.0, False, str(e)
        else:
            self._obs, reward, terminated, truncated, _ = self._env.step(command)
            ended, error = bool(terminated or truncated), self._obs.get("last_action_error")
        truncated_here = not ended and self._t >= self._limit
        self._done = ended or truncated_here
        observation = self._render(self._obs, feedback=error or None)
        info = {**observation.info, "browsergym_action": command, "truncated": truncated_here}
        success = (float(reward) > 0) if ended else (False if truncated_here else None)
        return StepResult(observation, float(reward), self._done, success, info)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env, self._done = None, True


def _webarena_lite_task(task: Task) -> tuple[type, dict]:
    try:
        from browsergym.webarenalite.task import WebArenaLiteTask
    except ImportError:
        raise InputError("WebArena-Lite needs the browsergym-webarenalite package (in its own "
                         "environment: it pins transformers 4.x); see docs/environments.md",
                         field="env") from None
    task_id = task.spec.get("task_id")
    if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id < 0:
        raise InputError(f"expected a WebArena-Lite task id >= 0, got {task_id!r}",
                         field="spec.task_id")
    return WebArenaLiteTask, {"task_id": task_id}


class WebArenaEnv(BrowserGymEnv):
    name = ENV_NAME

    def __init__(self, **kwargs: Any):
        check_webarena_urls()  # before anything else: a clear error, no browser started
        super().__init__(_webarena_lite_task, **kwargs)

    def reset(self, task: Task) -> Observation:
        check_task_env(task, ENV_NAME)
        return super().reset(task)


def make_tasks(seeds: list[int], split: str = "train", max_steps: int | None = None) -> list[Task]:
    """One task per WebArena-Lite task id (the seeds); the intent comes from BrowserGym on reset."""
    check_webarena_urls()
    return [Task(task_id=f"webarena_lite/{i}", env=ENV_NAME, split=split,
                 instruction=f"WebArena-Lite task {i} (the intent is given on reset)",
                 spec={"task_id": int(i), **({"max_steps": max_steps} if max_steps else {})})
            for i in seeds]


def make(**kwargs: Any) -> WebArenaEnv:
    """The registry's factory for `webarena`."""
    kwargs = {k: v for k, v in kwargs.items() if k in ("max_steps", "keep", "min_keep",
                                                       "headless", "timeout_ms")}
    return WebArenaEnv(**kwargs)
