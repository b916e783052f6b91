"""The TextWorld adapter: resets from a task, plays through `textworld.gym`, renders the state.

The agent sees the **abstract state**, the same short line form after reset and after every step
(other parts — the dream env, the experience-model parser — read it line by line):

    Feedback: <what the game said after the action, whitespace collapsed>   (not after reset)
    Location: <room name>
    Exits: <directions out of the room, a door after its direction: 'east (wooden door)'>
    Objects: <visible things, comma-separated, or 'none'>
    Inventory: <carried things, comma-separated, or 'nothing'>
    Actions: <the listed commands separated by ' | '>

No ASCII banner, no prompt or status line, and no room prose: the game's room description says
again, in many more words, what Exits and Objects say (it made states 3–5 times longer, and the
experience model has to write every state out). When the game's reply *is* a room description
(after a move or `look`), Feedback says `You are in the <room>.` plus whatever else the game said
(a score change, say). Objects and Inventory come from the game's facts: things in the room, doors
out of it, and what lies on supporters or in open containers, with '(closed)'/'(locked)' or
'(on X)'/'(in X)' after a name.

The listed commands are TextWorld's admissible commands, in its order, without `look`,
`inventory` and `examine …`: these never change the game and the state already shows what they
would reveal. The env still accepts them. The cooking challenge keeps `examine …`, since its recipe
is read by examining the cookbook.

reward = score difference (TextWorld reports the cumulative score); success = won; an episode ends
when won, lost, or at the step limit (`max_steps` of the task spec), which counts as a failure.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dreamgym_cli.envs.base import (Observation, StepResult, check_step_limit, check_task_env,
                                    clean_action)
from dreamgym_cli.envs.textworld_games import (
    DEFAULT_MAX_STEPS, check_challenge, check_seed, default_data_dir, ensure_game,
    game_is_complete, game_objective, normalize_settings, resolve_inside,
)
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task

ENV_NAME = "textworld"
_HEADER = re.compile(r"^\s*-=\s*(.*?)\s*=-[ \t]*\n?")
_GAME_OVER = re.compile(r"\*\*\* The End \*\*\*.*$|Would you like to RESTART.*$", re.S)


def _request_infos():
    from textworld import EnvInfos

    return EnvInfos(description=True, inventory=True, objective=True, admissible_commands=True,
                    policy_commands=True, won=True, lost=True, score=True, max_score=True,
                    feedback=True, facts=True)


def collapse(text: str | None) -> str:
    return " ".join((text or "").split())


# ----------------------------------------------------------------------------------------------
# Rendering the abstract state


def clean_feedback(raw: str | None, description: str | None = None) -> str:
    """The game's reply without the '>' prompt, the status line and the end-of-game menu.

    A reply that starts with a room header is a room description (after a move or `look`): it
    becomes `You are in the <room>.` followed by what the game said besides the description.
    `description` is the game's current room description (infos["description"]).
    """
    text = raw or ""
    prompt = text.rfind("\n>")
    if prompt != -1:
        text = text[:prompt]
    text = text.lstrip()
    header = _HEADER.match(text)
    if header is None:
        return collapse(_GAME_OVER.sub("", text))
    rest = collapse(_GAME_OVER.sub("", text[header.end():]))
    _, room_text = split_description(description)
    if room_text and room_text in rest:
        rest = collapse(rest.replace(room_text, " ", 1))
    return collapse(f"You are in the {header.group(1).strip()}. {rest}")


def _facts_by_predicate(facts) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for fact in facts or ():
        out.setdefault(fact.name, []).append(tuple(fact.arguments))
    return out


def _player_room(by: dict[str, list[tuple]]) -> str | None:
    return next((b.name for a, b in by.get("at", ()) if a.type == "P"), None)


def visible_objects(facts) -> list[str]:
    """Things the player can see: in the room, doors out of it, on supporters, in open boxes."""
    by = _facts_by_predicate(facts)
    room = _player_room(by)
    closed = {args[0].name for args in by.get("closed", ())}
    locked = {args[0].name for args in by.get("locked", ())}

    def mark(name: str) -> str:
        return f"{name} (locked)" if name in locked else f"{name} (closed)" if name in closed \
            else name

    top = sorted({x.name for x, r in by.get("at", ()) if r.name == room and x.type != "P"})
    doors = sorted({d.name for r, d, _ in by.get("link", ()) if r.name == room})
    shown = [mark(n) for n in top] + [mark(n) for n in doors if n not in top]
    holders, seen = list(top), set(top) | set(doors)
    while holders:  # breadth-first: what lies on/in what we can already see
        holder, holders = holders[0], holders[1:]
        inside = [(o.name, "on") for o, s in by.get("on", ()) if s.name == holder]
        if holder not in closed and holder not in locked:
            inside += [(o.name, "in") for o, c in by.get("in", ()) if c.name == holder]
        for name, rel in sorted(inside):
            if name not in seen:
                seen.add(name)
                shown.append(f"{mark(name)} ({rel} {holder})")
                holders.append(name)
    return shown


_DIRECTIONS = ("north", "south", "east", "west")


def exits(facts) -> list[str]:
    """Directions out of the player's room, sorted, each with its door: 'east (wooden door)'."""
    by = _facts_by_predicate(facts)
    room = _player_room(by)
    doors = {(r.name, other.name): d.name for r, d, other in by.get("link", ())}
    out = []
    for direction in _DIRECTIONS:  # `north_of(a, b)`: a lies north of b
        for there, here in by.get(f"{direction}_of", ()):
            if here.name == room:
                door = doors.get((room, there.name))
                out.append(f"{direction} ({door})" if door else direction)
    return out


def listed_commands(admissible, challenge: str | None = None) -> list[str]:
    """The commands the state lists: TextWorld's, without look/inventory/examine (module doc)."""
    keep_examine = challenge == "tw-cooking"
    return [c for c in admissible or () if c not in ("look", "inventory")
            and (keep_examine or not c.startswith("examine "))]


def carried_items(facts) -> list[str]:
    by = _facts_by_predicate(facts)
    return sorted(o.name for o, c in by.get("in", ()) if c.type == "I")


def split_description(description: str | None) -> tuple[str | None, str]:
    """('Bedroom', 'You make a grand ...') from '-= Bedroom =-\\nYou make a grand ...'."""
    text = description or ""
    match = _HEADER.match(text)
    if not match:
        return None, collapse(text)
    return match.group(1).strip(), collapse(text[match.end():])


def render_state(infos: Mapping[str, Any], feedback: str | None = None,
                 actions: list[str] | None = None) -> str:
    """The abstract state text (module doc) from TextWorld's infos; feedback None after reset.

    actions: the listed commands (default: `listed_commands` of the admissible ones).
    """
    room, _ = split_description(infos.get("description"))
    facts = infos.get("facts")
    if room is None and facts is not None:
        room = _player_room(_facts_by_predicate(facts))
    lines = [] if feedback is None else [f"Feedback: {feedback}"]
    lines.append(f"Location: {room or 'unknown'}")
    if facts is not None:
        lines.append(f"Exits: {', '.join(exits(facts)) or 'none'}")
        lines.append(f"Objects: {', '.join(visible_objects(facts)) or 'none'}")
        inventory = ", ".join(carried_items(facts)) or "nothing"
    else:
        inventory = collapse(infos.get("inventory")) or "nothing"
    lines.append(f"Inventory: {inventory}")
    if actions is None:
        actions = listed_commands(infos.get("admissible_commands"))
    lines.append(f"Actions: {' | '.join(actions)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# The env


class TextWorldEnv:
    """A real TextWorld env for tasks made by `dreamgym tasks make --env textworld`."""

    name = ENV_NAME

    def __init__(self, data_dir: str | Path | None = None, max_steps: int | None = None):
        self.data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
        self.max_steps_override = check_step_limit(max_steps)
        self._gym = None
        self._game: Path | None = None
        self._infos: dict[str, Any] = {}
        self._score = 0.0
        self._t = 0
        self._limit = 0
        self._done = True
        self._challenge: str | None = None

    # -- task -> game file

    def game_file(self, task: Task) -> Path:
        """The task's compiled game inside data_dir, regenerated if it is missing."""
        spec = task.spec
        challenge = check_challenge(spec.get("challenge"), field="spec.challenge")
        try:
            settings = normalize_settings(challenge, spec.get("settings") or {})
        except InputError as e:
            raise InputError(e.message, field="spec.settings") from None
        seed = check_seed(spec.get("seed"), field="spec.seed")
        game = spec.get("game")
        path = resolve_inside(self.data_dir, game, field="spec.game") if game else None
        if path is None or not game_is_complete(path):
            # The task file may come from another machine: regenerate deterministically.
            rel, _ = ensure_game(self.data_dir, challenge, settings, seed)
            path = resolve_inside(self.data_dir, rel, field="spec.game")
        return path

    def _step_limit(self, task: Task) -> int:
        if self.max_steps_override is not None:
            return self.max_steps_override
        limit = task.spec.get("max_steps")
        if limit is None:
            return DEFAULT_MAX_STEPS[task.spec["challenge"]]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InputError(f"expected an integer >= 1, got {limit!r}", field="spec.max_steps")
        return limit

    # -- Env protocol

    def reset(self, task: Task) -> Observation:
        check_task_env(task, ENV_NAME)
        game = self.game_file(task)
        self._limit = self._step_limit(task)
        if game != self._game or self._gym is None:
            from textworld.gym.envs.textworld import TextworldGymEnv

            self.close()
            self._gym = TextworldGymEnv([str(game)], _request_infos(), max_episode_steps=None)
            self._game = game
        with warnings.catch_warnings():
            # jericho cannot find score/move counters in TextWorld stories; TextWorld tracks the
            # score itself, so its "not fully supported" warning is noise here.
            warnings.filterwarnings("ignore", message=".*not fully supported")
            _, infos = self._gym.reset()
        self._infos, self._score, self._t, self._done = infos, float(infos["score"]), 0, False
        self._challenge = task.spec.get("challenge")
        info = self._info(infos, raw_feedback=None, truncated=False)
        info["objective"] = collapse(infos.get("objective"))
        actions = listed_commands(infos["admissible_commands"], self._challenge)
        return Observation(render_state(infos, actions=actions), actions, info)

    def step(self, action: str) -> StepResult:
        if self._gym is None or self._done:
            raise RuntimeError("the episode is over (or never started): call reset(task) first")
        _, score, game_over, infos = self._gym.step(clean_action(action))
        self._t += 1
        reward = float(score) - self._score
        self._score, self._infos = float(score), infos
        won, lost = bool(infos["won"]), bool(infos["lost"])
        truncated = not (won or lost or game_over) and self._t >= self._limit
        self._done = won or lost or bool(game_over) or truncated
        feedback = clean_feedback(infos["feedback"], infos.get("description"))
        actions = listed_commands(infos["admissible_commands"], self._challenge)
        observation = Observation(render_state(infos, feedback, actions), actions,
                                  self._info(infos, raw_feedback=infos["feedback"],
                                             truncated=truncated))
        return StepResult(observation, reward, self._done, won, dict(observation.info))

    def expert_action(self) -> str | None:
        """First command of TextWorld's shortest winning plan from the *current* state."""
        commands = self._infos.get("policy_commands") or []
        return commands[0] if commands else None

    def close(self) -> None:
        if self._gym is not None:
            self._gym.close()
        self._gym, self._game, self._done = None, None, True

    def _info(self, infos: Mapping[str, Any], *, raw_feedback: str | None,
              truncated: bool) -> dict[str, Any]:
        return {"score": float(infos["score"]), "max_score": float(infos["max_score"]),
                "won": bool(infos["won"]), "lost": bool(infos["lost"]), "moves": self._t,
                "truncated": truncated, "feedback": raw_feedback,
                "game": self._game.name if self._game else None}


def task_instruction(data_dir: Path, relpath: str) -> str:
    """The instruction of a task = its game's objective text, whitespace collapsed."""
    return game_objective(resolve_inside(data_dir, relpath))
