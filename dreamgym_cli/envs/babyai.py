"""The BabyAI adapter: `minigrid`'s BabyAI levels, with our own text rendering of the agent's view.

The agent sees only its egocentric 7x7 view (what minigrid gives it), rendered as text:

    Feedback: <what the last action did>               (not after reset)
    Mission: go to the red ball
    Front: a wall | nothing | a red ball | a grey door (locked) ...   (the cell ahead)
    Left: ...                                          (the cell to the agent's left)
    Right: ...
    Carrying: nothing | a blue key
    Visible: red ball (2 ahead, 1 left); grey door (locked) (3 ahead) | nothing
    Actions: turn left | turn right | go forward | pick up | drop | toggle | done

Positions are counted from the agent: 'ahead' along its facing, 'left'/'right' across it. Walls
are only named in Front/Left/Right. Actions are the seven words above (minigrid's `Actions`).
reward = 1.0 on success (minigrid's time-discounted reward is in info), 0.0 otherwise; an episode
ends on success, at the level's own step limit, or at `max_steps` of the task spec.

Expert: minigrid's `BabyAIBot`, re-planned after every action actually taken (so it follows the
current state, including after off-policy moves). Task spec: `{"level": "BabyAI-GoToLocal-v0",
"seed": n, "max_steps": n or null}`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from dreamgym_cli.envs.base import Observation, StepResult, check_step_limit, check_task_env
from dreamgym_cli.errors import InputError, unknown_name
from dreamgym_cli.schema import Task

ENV_NAME = "babyai"
ACTION_WORDS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle", "done")
INSTALL_HINT = "BabyAI needs the `babyai` extra (pip install 'dreamgym[babyai]')"


@lru_cache(maxsize=1)
def available_levels() -> tuple[str, ...]:
    try:
        import gymnasium
        import minigrid  # noqa: F401  (importing it registers the levels with gymnasium)
    except ImportError:
        raise InputError(INSTALL_HINT, field="env") from None
    return tuple(sorted(k for k in gymnasium.registry if k.startswith("BabyAI-")))


def check_level(name: Any, field: str = "suite") -> str:
    if not isinstance(name, str) or name not in available_levels():
        raise unknown_name("BabyAI level", str(name), available_levels(), field=field)
    return name


def describe(obj) -> str:
    """'a red ball', 'a grey door (locked)', 'a wall', 'nothing'."""
    if obj is None:
        return "nothing"
    if obj.type == "wall":
        return "a wall"
    name = f"{obj.color} {obj.type}" if obj.type not in ("goal", "lava") else obj.type
    if obj.type == "door":
        name += " (locked)" if obj.is_locked else " (open)" if obj.is_open else " (closed)"
    return f"a {name}"


def render_view(env, feedback: str | None = None) -> str:
    """The abstract state (module doc) from the agent's current egocentric view."""
    grid, visible = env.gen_obs_grid()
    cx, cy = grid.width // 2, grid.height - 1  # the agent, facing up the view grid
    seen = []
    for j in range(grid.height):
        for i in range(grid.width):
            obj = grid.get(i, j)
            if not visible[i, j] or obj is None or obj.type == "wall" or (i, j) == (cx, cy):
                continue
            ahead, side = cy - j, i - cx
            where = [f"{ahead} ahead"] if ahead else []
            where += [f"{abs(side)} {'right' if side > 0 else 'left'}"] if side else []
            seen.append((ahead + abs(side), f"{describe(obj)[2:]} ({', '.join(where)})"))
    lines = [] if feedback is None else [f"Feedback: {feedback}"]
    lines += [f"Mission: {env.mission}",
              f"Front: {describe(grid.get(cx, cy - 1))}",
              f"Left: {describe(grid.get(cx - 1, cy))}",
              f"Right: {describe(grid.get(cx + 1, cy))}",
              f"Carrying: {describe(env.carrying)}",
              f"Visible: {'; '.join(t for _, t in sorted(seen)) or 'nothing'}",
              f"Actions: {' | '.join(ACTION_WORDS)}"]
    return "\n".join(lines)


def _feedback(word: str, before: tuple, after: tuple) -> str:
    """What an action did, from (position, direction, carrying) before and after."""
    if before == after:
        return f"{word}: nothing happened" if word not in ("toggle", "done") else f"{word}"
    return f"{word}: done"


class BabyAIEnv:
    """A real BabyAI level (minigrid) for tasks made by `dreamgym tasks make --env babyai`."""

    name = ENV_NAME

    def __init__(self, max_steps: int | None = None, **_ignored: Any):
        self.max_steps_override = check_step_limit(max_steps)
        self._gym = None
        self._level: str | None = None
        self._bot = None
        self._suggested = None
        self._t, self._limit, self._done = 0, 0, True

    def reset(self, task: Task) -> Observation:
        check_task_env(task, ENV_NAME)
        level = check_level(task.spec.get("level"), field="spec.level")
        seed = task.spec.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InputError(f"expected an integer seed >= 0, got {seed!r}", field="spec.seed")
        if level != self._level:
            import gymnasium

            self.close()
            self._gym, self._level = gymnasium.make(level), level
        self._gym.reset(seed=seed)
        env = self._gym.unwrapped
        self._limit = self.max_steps_override or task.spec.get("max_steps") or env.max_steps
        self._t, self._done = 0, False
        self._replan(None)
        return Observation(render_view(env), list(ACTION_WORDS),
                           {"level": level, "mission": env.mission})

    def step(self, action: str) -> StepResult:
        if self._gym is None or self._done:
            raise RuntimeError("the episode is over (or never started): call reset(task) first")
        env = self._gym.unwrapped
        word = " ".join(str(action).lower().split())
        self._t += 1
        if word not in ACTION_WORDS:
            feedback, reward, terminated, truncated_env = \
                f"not an action: {action!r} (expected one of: {', '.join(ACTION_WORDS)})", 0.0, \
                False, False
        else:
            before = (tuple(env.agent_pos), env.agent_dir, id(env.carrying))
            _, reward, terminated, truncated_env, _ = self._gym.step(ACTION_WORDS.index(word))
            after = (tuple(env.agent_pos), env.agent_dir, id(env.carrying))
            feedback = _feedback(word, before, after)
            self._replan(ACTION_WORDS.index(word))
        success = bool(terminated) and float(reward) > 0
        truncated = not terminated and (bool(truncated_env) or self._t >= self._limit)
        self._done = bool(terminated) or truncated
        info = {"raw_reward": float(reward), "moves": self._t, "truncated": truncated}
        observation = Observation(render_view(env, feedback), list(ACTION_WORDS), info)
        return StepResult(observation, 1.0 if success else 0.0, self._done, success, info)

    def _replan(self, action_taken) -> None:
        """BabyAIBot must see every action taken, in order, to keep its map of the level."""
        from minigrid.utils.baby_ai_bot import BabyAIBot

        try:
            if action_taken is None:
                self._bot = BabyAIBot(self._gym)
            self._suggested = self._bot.replan(action_taken)
        except Exception:  # the bot gives up on states it cannot plan from (it asserts)
            self._bot, self._suggested = None, None

    def expert_action(self) -> str | None:
        if self._done or self._suggested is None:
            return None
        return ACTION_WORDS[int(self._suggested)]

    def close(self) -> None:
        if self._gym is not None:
            self._gym.close()
        self._gym, self._level, self._bot, self._done = None, None, None, True


def make_tasks(suite: list[str], seeds: list[int], split: str, max_steps: int | None,
               advance=lambda: None) -> list[Task]:
    """One task per (BabyAI level id, seed); the instruction is the level's mission."""
    levels = [check_level(name) for name in suite]
    env = BabyAIEnv()
    tasks = []
    try:
        for level in levels:
            for seed in seeds:
                spec = {"level": level, "seed": seed, "max_steps": max_steps}
                probe = Task(task_id=f"babyai/{level}/seed-{seed}", env=ENV_NAME,
                             instruction="", spec=spec, split=split)
                observation = env.reset(probe)
                tasks.append(Task(task_id=probe.task_id, env=ENV_NAME, spec=spec, split=split,
                                  instruction=observation.info["mission"]))
                advance()
    finally:
        env.close()
    return tasks
