"""The ScienceWorld adapter (`scienceworld` wheel: a Scala simulator in a JVM, reached by py4j).

Fast step: the library's `env.step` also rebuilds the ~400 valid action-object combinations on
every call (~125 ms here); we call the server's step, score and completion directly and read the
room and inventory with the free `look`/`inventory` actions (~21 ms a step). The full valid-action
list is fetched only on demand (`valid_actions()`, e.g. for a random policy), so observations carry
`admissible=None`; the state lists the ~25 action templates instead.

    Feedback: <what the simulator said after the action>   (not after reset)
    Look: <the room description, whitespace collapsed>
    Inventory: <what the agent carries, whitespace collapsed>
    Score: <0-100 task progress>
    Actions: <action templates, ' | '-separated, e.g. 'open OBJ | go OBJ | focus on OBJ'>

reward = score difference / 100 (the score is the simulator's task progress, 0-100, negative when
the task is failed); success = completed with score 100; an episode ends when the simulator says
completed, when the score goes negative, or at `max_steps`.

Expert: the task variation's **gold action sequence** (`get_gold_action_sequence`), replayed in
order. It is a replay, not a state-dependent plan: after an off-policy move it does not recover
(mixed policies will mostly fail here). Task spec: `{"task": name, "variation": n,
"simplifications": "easy" or "", "max_steps": n}`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from dreamgym_cli.envs.base import Observation, StepResult, check_step_limit, check_task_env
from dreamgym_cli.errors import InputError, unknown_name
from dreamgym_cli.schema import Task

ENV_NAME = "scienceworld"
DEFAULT_MAX_STEPS = 100
INSTALL_HINT = ("ScienceWorld needs the `science` extra (pip install 'dreamgym[science]') "
                "and Java 17")


def _collapse(text: str | None) -> str:
    return " ".join((text or "").split())


@lru_cache(maxsize=1)
def available_tasks() -> tuple[str, ...]:
    try:
        from scienceworld.constants import ID2TASK
    except ImportError:
        raise InputError(INSTALL_HINT, field="env") from None
    return tuple(sorted(ID2TASK.values()))


def check_task(name: Any, field: str = "suite") -> str:
    if not isinstance(name, str) or name not in available_tasks():
        raise unknown_name("ScienceWorld task", str(name), available_tasks(), field=field)
    return name


class ScienceWorldEnv:
    """A real ScienceWorld env (one JVM per instance) for `tasks make --env scienceworld` tasks."""

    name = ENV_NAME

    def __init__(self, max_steps: int | None = None, **_ignored: Any):
        self.max_steps_override = check_step_limit(max_steps)
        self._sw = None
        self._loaded: tuple | None = None
        self._gold: list[str] = []
        self._templates: list[str] = []
        self._t, self._limit, self._score, self._done = 0, DEFAULT_MAX_STEPS, 0, True

    def _simulator(self):
        if self._sw is None:
            try:
                from scienceworld import ScienceWorldEnv as _Simulator
            except ImportError:
                raise InputError(INSTALL_HINT, field="env") from None
            self._sw = _Simulator("", envStepLimit=10**6)  # we count steps ourselves
        return self._sw

    def load(self, task: str, variation: int, simplifications: str = "") -> None:
        """Load a task variation (with its gold path) unless it is the one already loaded."""
        key = (task, variation, simplifications)
        if key == self._loaded:
            return
        sw = self._simulator()
        limit = sw.get_max_variations(task)
        if not 0 <= variation < limit:
            raise InputError(f"task {task!r} has variations 0-{limit - 1}, got {variation}",
                             field="spec.variation")
        sw.load(task, variation, simplifications, generateGoldPath=True)
        self._gold = sw.get_gold_action_sequence()
        self._templates = list(sw.get_possible_actions())
        self._loaded = key

    # -- Env protocol

    def reset(self, task: Task) -> Observation:
        check_task_env(task, ENV_NAME)
        spec = task.spec
        name = check_task(spec.get("task"), field="spec.task")
        variation = spec.get("variation")
        if isinstance(variation, bool) or not isinstance(variation, int):
            raise InputError(f"expected an integer variation, got {variation!r}",
                             field="spec.variation")
        simplifications = spec.get("simplifications") or ""
        self.load(name, variation, simplifications)
        limit = self.max_steps_override or spec.get("max_steps") or DEFAULT_MAX_STEPS
        self._sw.server.reset()
        self._sw.server.step("look around")  # what the library's reset does, minus valid actions
        self._t, self._limit, self._score, self._done = 0, int(limit), 0, False
        info = {"task": name, "variation": variation, "instruction": self.task_description()}
        return Observation(self._render(None), None, info)

    def step(self, action: str) -> StepResult:
        if self._sw is None or self._done:
            raise RuntimeError("the episode is over (or never started): call reset(task) first")
        server = self._sw.server
        feedback = server.step(action)
        score = int(round(100 * server.getScore()))
        completed = bool(server.getCompleted()) or score < 0
        reward, self._score = (score - self._score) / 100.0, score
        self._t += 1
        success = completed and score >= 100
        truncated = not completed and self._t >= self._limit
        self._done = completed or truncated
        info = {"score": score, "moves": self._t, "truncated": truncated}
        observation = Observation(self._render(feedback), None, info)
        return StepResult(observation, reward, self._done, success, info)

    def expert_action(self) -> str | None:
        """The next action of the gold sequence (a replay by step count, not state-dependent)."""
        if self._done or self._t >= len(self._gold):
            return None
        return self._gold[self._t]

    def valid_actions(self) -> list[str]:
        """Every valid action-object combination now (slow: ~100 ms, so only on demand)."""
        return list(self._sw.get_valid_action_object_combinations()) if self._sw else []

    def task_description(self) -> str:
        text = _collapse(self._sw.taskdescription()) if self._sw else ""
        return text.removeprefix("Task Description:").strip()

    def close(self) -> None:
        if self._sw is not None:
            self._sw.close()
        self._sw, self._loaded, self._done = None, None, True

    def _render(self, feedback: str | None) -> str:
        lines = [] if feedback is None else [f"Feedback: {_collapse(feedback)}"]
        lines.append(f"Look: {_collapse(self._sw.look())}")
        lines.append(f"Inventory: {_collapse(self._sw.inventory())}")
        lines.append(f"Score: {self._score}")
        lines.append(f"Actions: {' | '.join(self._templates)}")
        return "\n".join(lines)


def make_tasks(suite: list[str], seeds: list[int], split: str, max_steps: int | None,
               advance=lambda: None) -> list[Task]:
    """One task per (ScienceWorld task, variation index); `seeds` are the variation indices."""
    names = [check_task(name) for name in suite]
    env = ScienceWorldEnv()
    tasks = []
    try:
        for name in names:
            for variation in seeds:
                spec = {"task": name, "variation": variation, "simplifications": "",
                        "max_steps": max_steps or DEFAULT_MAX_STEPS}
                probe = Task(task_id=f"scienceworld/{name}/var-{variation}", env=ENV_NAME,
                             instruction="", spec=spec, split=split)
                observation = env.reset(probe)
                tasks.append(Task(task_id=probe.task_id, env=ENV_NAME, spec=spec, split=split,
                                  instruction=observation.info["instruction"]))
                advance()
    finally:
        env.close()
    return tasks
