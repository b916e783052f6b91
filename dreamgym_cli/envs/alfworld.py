"""ALFWorld's text games on ALFWorld's own engine: the user's json data or dreamgym's own games.

ALFWorld ships its games as directories `json_2.1.1/<split>/<task>/<trial>/` holding
`traj_data.json` (the ALFRED trajectory: task type, annotations) and `game.tw-pddl` (a TextWorld
PDDL game, JSON with `pddl_domain`, `pddl_problem`, `grammar`, `solvable`). The games are played
the way ALFWorld's `AlfredTWEnv` plays them: `textworld.gym` with ALFWorld's `AlfredDemangler`,
`AlfredInfos` and `AlfredExpert` wrappers, on TextWorld's PDDL engine (`fast-downward-textworld`,
compiled by `pip install -e '.[alfworld]'`; see the Makefile).

Which games: `--data DIR` or `$ALFWORLD_DATA` (the user's ALFWorld data) when given, else the 24
games dreamgym authors itself in the same format (`envs.alfworld_games`: the six task types in
every split), generated once into `$DREAMGYM_HOME/games/alfworld/`. Tasks are the solvable games of
a split in sorted path order; seed N is the N-th. A task's spec names its game and the data
directory it came from, so later stages need no flag. The state is `Observation:` (at reset) or
`Feedback:` (after a step) and `Actions:` lines; reward 1 and success when ALFWorld says `won`.
The expert is ALFWorld's planner expert (`AlfredExpert` of type `planner`): TextWorld's
`policy_commands`, a Fast Downward plan from the current state, so it recovers from any move.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dreamgym_cli.envs.base import Observation, StepResult
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task

ENV_NAME = "alfworld"
SPLITS = {"train": "train", "valid": "valid_seen", "test": "valid_unseen"}  # ours → ALFWorld's
LAYOUT = "json_2.1.1/<train|valid_seen|valid_unseen>/<task>/<trial>/{traj_data.json,game.tw-pddl}"


BUILTIN = "dreamgym"  # spec["games"] of the games dreamgym generates (envs.alfworld_games)


def data_dir(data: str | Path | None = None) -> Path | None:
    """The user's ALFWorld data directory (`data`, else $ALFWORLD_DATA), or None for ours.

    Importing `alfworld` sets $ALFWORLD_DATA to its cache (~/.cache/alfworld) when unset, so a
    $ALFWORLD_DATA without json_2.1.1/ in it means "no user data"; a `data` argument must have it.
    """
    value = data or os.environ.get("ALFWORLD_DATA")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise InputError("ALFWorld data directory not found", file=path, field="data")
    if not data and not (path / "json_2.1.1").is_dir():
        return None
    return path


def game_files(root: Path, split: str) -> list[Path]:
    """The solvable games of one of our splits, sorted; InputError when there are none."""
    if split not in SPLITS:
        raise InputError(f"expected a split among {', '.join(SPLITS)}, got {split!r}",
                         field="split")
    base = root / "json_2.1.1" / SPLITS[split]
    games = []
    for game in sorted(base.glob("*/*/game.tw-pddl")):
        try:
            solvable = json.loads(game.read_text()).get("solvable", True)
        except (OSError, ValueError):
            raise InputError("not a readable ALFWorld game (JSON expected)", file=game) from None
        if solvable and (game.parent / "traj_data.json").is_file():
            games.append(game)
    if not games:
        raise InputError(f"no ALFWorld games for split {split!r}; expected {LAYOUT}", file=base,
                         field="data")
    return games


def game_instruction(game: Path) -> str:
    """The first annotator's task description from the game's traj_data.json."""
    path = game.parent / "traj_data.json"
    try:
        traj = json.loads(path.read_text())
        return " ".join(traj["turk_annotations"]["anns"][0]["task_desc"].split())
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise InputError("expected turk_annotations.anns[0].task_desc", file=path) from None


def make_tasks(seeds: list[int], split: str = "train", data: str | Path | None = None,
               max_steps: int | None = None, games_dir: Path | None = None) -> list[Task]:
    """Tasks for the user's data (`data`/$ALFWORLD_DATA) or else dreamgym's own games (generated
    into `games_dir`, default $DREAMGYM_HOME/games, when missing)."""
    root = data_dir(data)
    source = "user"
    if root is None:
        from dreamgym_cli.envs.alfworld_games import ensure_builtin_games

        root, source = ensure_builtin_games(games_dir), BUILTIN
    games = game_files(root, split)
    tasks = []
    for seed in seeds:
        if not 0 <= seed < len(games):
            raise InputError(f"seed {seed} is out of range: split {split!r} has {len(games)} "
                             f"games (0-{len(games) - 1})", field="seeds")
        rel = games[seed].relative_to(root).as_posix()
        spec: dict[str, Any] = {"game": rel, "data": str(root.resolve()), "games": source,
                                **({"max_steps": max_steps} if max_steps else {})}
        tasks.append(Task(task_id=f"alfworld/{Path(rel).parent.as_posix()}", env=ENV_NAME,
                          instruction=game_instruction(games[seed]), spec=spec, split=split))
    return tasks


def _render(obs: str, admissible: list[str], feedback: bool) -> str:
    head = "Feedback" if feedback else "Observation"
    return f"{head}: {' '.join(obs.split())}\nActions: {' | '.join(admissible)}"


class AlfWorldEnv:
    name = ENV_NAME

    def __init__(self, data: str | Path | None = None, max_steps: int | None = None,
                 **_ignored: Any):
        self.root = data_dir(data)  # a clear error before any work; None: the task's own data
        self.max_steps = max_steps
        self._gym, self._t, self._limit, self._done = None, 0, 50, True
        self._info: dict = {}

    def game_path(self, task: Task) -> Path:
        """The task's game file: under its spec's data directory, else under `data`/
        $ALFWORLD_DATA; dreamgym's own games are regenerated when their directory is gone."""
        rel = str(task.spec.get("game", ""))
        roots = [Path(task.spec["data"])] if task.spec.get("data") else []
        roots += [self.root] if self.root else []
        if task.spec.get("games") == BUILTIN:
            from dreamgym_cli.envs.alfworld_games import ensure_builtin_games

            if not any((root / rel).is_file() for root in roots):
                roots.append(ensure_builtin_games())
        for root in roots:
            if rel and (root / rel).is_file():
                return root / rel
        if not roots:
            raise InputError("the task names no ALFWorld data directory: pass --data DIR or set "
                             "ALFWORLD_DATA", field="data")
        raise InputError("ALFWorld game not found under the data directory",
                         file=roots[0] / rel, field="spec.game")

    def reset(self, task: Task) -> Observation:
        try:
            import textworld.gym
            from alfworld.agents.environment.alfred_tw_env import (
                AlfredDemangler, AlfredExpert, AlfredExpertType, AlfredInfos,
            )
        except ImportError:
            raise InputError("playing ALFWorld needs the alfworld extra: pip install -e "
                             "'.[alfworld]' (it compiles fast-downward-textworld)",
                             field="env") from None
        game = self.game_path(task)
        from textworld import EnvInfos

        self.close()
        infos = EnvInfos(won=True, admissible_commands=True, extras=["gamefile", "expert_plan"])
        wrappers = [AlfredDemangler(), AlfredInfos,
                    AlfredExpert(expert_type=AlfredExpertType.PLANNER)]
        env_id = textworld.gym.register_game(str(game), infos, max_episode_steps=10_000,
                                             wrappers=wrappers)
        self._gym = textworld.gym.make(env_id)
        obs, info = self._gym.reset()
        self._t, self._done = 0, False
        self._limit = self.max_steps or int(task.spec.get("max_steps") or 50)
        self._info = info
        return Observation(_render(obs, info["admissible_commands"], False),
                           list(info["admissible_commands"]), {"game": task.spec["game"]})

    def step(self, action: str) -> StepResult:
        if self._gym is None or self._done:
            raise RuntimeError("the episode is over (or never started): call reset(task) first")
        obs, _, done, info = self._gym.step(action)
        self._t, self._info = self._t + 1, info
        won = bool(info.get("won"))
        truncated = not (won or done) and self._t >= self._limit
        self._done = won or bool(done) or truncated
        admissible = list(info["admissible_commands"])
        return StepResult(Observation(_render(obs, admissible, True), admissible, {}),
                          1.0 if won else 0.0, self._done, won, {"truncated": truncated})

    def expert_action(self) -> str | None:
        """The first command of ALFWorld's planner expert's plan from the current state."""
        plan = self._info.get("extra.expert_plan") if self._gym else None
        return plan[0] if plan else None

    def close(self) -> None:
        if self._gym is not None:
            self._gym.close()
        self._gym, self._done = None, True


def make(**kwargs: Any) -> AlfWorldEnv:
    """The registry's factory for `alfworld` (`data=` or $ALFWORLD_DATA, else the task's data)."""
    return AlfWorldEnv(**kwargs)
