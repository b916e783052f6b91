"""The dream environment: the experience model as an env (`--env dream:EM_DIR`).

A batch of episodes advances together: one retrieval call for the batch (top-k similar past
*real* transitions from the replay store — synthetic ones too with `retrieve_synthetic`), one generation call for the batch, then parsing. A completion
that does not parse is regenerated (up to `max_retries`, sampling at a non-zero temperature) and
then replaced by an explicit invalid transition (failure, reward 0), counted in `metrics`.

At temperature 0 with retrieval over real transitions only (the defaults) a transition is a
deterministic function of its query (instruction, state, action, the history the prompt shows,
the episode ids retrieval skips), so identical queries are predicted once: duplicates within a
batch (a GRPO group's members all start in the same state) and repeats across batches (an LRU of
`cache_size` entries) reuse the first answer, counted as `dream/cache_hits`. Sampling
(temperature > 0) or retrieving synthetic transitions (the store changes as episodes are
written) turns the cache off; `cache_size=0` turns it off too.

Episodes start where `resolve_start_state` says (the one rule, shared with train-agent's
curriculum and `tasks evolve`): the task's own real t=0 state in the store, else its parent's (a
generated task starts where its parent does), else the `initial_state` of its spec; else from a
reset of the real env named by the task (offline envs like TextWorld). The step limit is enforced
here: hitting it ends the episode as a failure. Finished episodes can be written to the store as
`source=synthetic` (the paper's co-evolving buffer).

`DreamEnv` also speaks the single-episode `Env` protocol (reset/step) for batch size 1.

Public face (used by eval-em, the curriculum and serve): `predict` (transitions for given
task/state/action queries, each with episode ids retrieval must skip), `reset_batch(..., exclude=)`,
`is_done` / `end_episode` / `episode_steps`, `start_states`, `backend_and_tokenizer`,
`replay_store`; `read_em_settings` / `open_experience_model` open an EM directory;
`real_start_states` / `resolve_start_state` say where a task starts.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreamgym_cli.envs.base import Observation, StepResult
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import EpisodeRecord, Task, episode_record, now_utc

if TYPE_CHECKING:
    from dreamgym_cli.experience.examples import EMSettings
    from dreamgym_cli.experience.parser import ParsedTransition


@dataclasses.dataclass
class _Slot:
    task: Task
    episode_id: str
    state: str
    admissible: list[str] | None
    steps: list[dict] = dataclasses.field(default_factory=list)
    done: bool = False
    exclude: frozenset[str] = frozenset()  # episode ids retrieval must not return (eval-em)


@dataclasses.dataclass(frozen=True)
class TransitionQuery:
    """One transition to predict: `action` taken in `state` of `task`, after `history`."""

    task: Task
    state: str
    action: str
    history: Sequence[dict] = ()  # the episode's earlier step rows (their state and action)
    exclude: frozenset[str] = frozenset()  # episode ids retrieval must not return


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The model's transition for one query; an invalid one once retries are spent."""

    transition: ParsedTransition
    first_try_failed: bool  # the first completion did not parse (eval-em reports how often)


def read_em_settings(em_dir: str | Path, *, field: str | None = None) -> EMSettings:
    """The settings of an experience-model directory; InputError when it is not one."""
    from dreamgym_cli.experience.examples import EM_SETTINGS_FILE, EMSettings

    em_dir = Path(em_dir)
    if not (em_dir / EM_SETTINGS_FILE).is_file():
        raise InputError(f"not an experience-model directory (no {EM_SETTINGS_FILE}); make "
                         "one with `dreamgym train-em`", file=em_dir, field=field)
    return EMSettings.load(em_dir)


def open_experience_model(em_dir: str | Path, *, settings: EMSettings | None = None,
                          field: str | None = None) -> tuple[EMSettings, Any, Any]:
    """(settings, model, tokenizer) of an experience-model directory (settings read unless
    given: a caller that checked them before loading the weights passes them on)."""
    from dreamgym_cli.llm.models import load_model

    if settings is None:
        settings = read_em_settings(em_dir, field=field)
    model, tokenizer = load_model(Path(em_dir))
    return settings, model, tokenizer


def admissible_from_state(text: str) -> list[str] | None:
    """The `Actions:` line of an abstract state, as the agent's admissible list."""
    from dreamgym_cli.experience.annotate_rules import parse_abstract_state

    actions = parse_abstract_state(text).get("actions")
    return list(actions) if actions else None


# ---- where a task starts: one rule for the dream env, train-agent's curriculum, tasks evolve ----

StartState = tuple[str, tuple[str, ...]]  # (state text, the actions its `Actions:` line lists)


def start_state(text: str) -> StartState:
    """A start state with the admissible actions an agent is shown in it."""
    return text, tuple(admissible_from_state(text) or ())


def real_start_states(store) -> dict[str, StartState]:
    """{task_id: start state} from the t=0 steps of a replay store's *real* episodes (a dream's
    own synthetic output is no evidence of where the real task starts); {} without a store."""
    if store is None:
        return {}
    table = store.sql("SELECT task_id, any_value(state) AS state FROM steps "
                      "WHERE t = 0 AND source = 'real' GROUP BY task_id")
    return {task_id: start_state(state) for task_id, state in
            zip(table.column("task_id").to_pylist(), table.column("state").to_pylist())}


def resolve_start_state(task: Task, known: Mapping[str, StartState]) -> StartState | None:
    """Where `task`'s episodes start, by the one rule: its own real t=0 state, else its parent's
    (a generated task starts where the task it varies does), else the `initial_state` its spec
    carries; None when none is known (the dream env then resets the task's real env).

    known: real t=0 start states by task id (`real_start_states`).
    """
    own = known.get(task.task_id)
    found = own if own and own[0] else (known.get(task.parent_id) if task.parent_id else None)
    if found is None and task.spec.get("initial_state"):
        found = start_state(task.spec["initial_state"])
    return found


def cut_prompt(ids: list[int], settings) -> list[int]:
    """The prompt cut from the left to max_length − max_new_tokens (as training cut it)."""
    if settings.max_length is None:
        return ids
    room = max(1, settings.max_length - settings.max_new_tokens)
    return ids[-room:] if len(ids) > room else ids


class DreamEnv:
    """Experience-model env over a batch of episodes."""

    def __init__(self, em_dir: str | Path, *, store: Any = None, backend: str = "transformers",
                 backend_options: dict | None = None, temperature: float = 0.0,
                 max_retries: int = 2, max_steps: int | None = None,
                 write_to_store: bool = False, policy_name: str = "policy", seed: int | None = None,
                 model=None, tokenizer=None, retrieve_synthetic: bool = False,
                 settings: EMSettings | None = None, max_new_tokens: int | None = None,
                 cache_size: int = 65_536, retrieval_keys: str = "full"):
        """`model`/`tokenizer` (and `settings`) already loaded from `em_dir` are shared, not
        loaded again (serve: one model for every session); `max_new_tokens` overrides the
        model's setting; `cache_size`: transitions remembered for identical queries (used only
        where a query determines its transition; 0: never); `retrieval_keys`: the store's
        embedding keys retrieval searches (`store.embed.KEYS`; "full", the store's default)."""
        from dreamgym_cli.llm.generate import open_backend

        self.em_dir = Path(em_dir)
        self.settings = settings if settings is not None else read_em_settings(self.em_dir)
        if max_new_tokens is not None:
            self.settings = dataclasses.replace(self.settings, max_new_tokens=max_new_tokens)
        self.store = self._open_store(store)
        from dreamgym_cli.store.embed import vectors_id

        vectors_id(retrieval_keys)  # an unknown name fails here, naming the valid ones
        self.retrieval_keys = retrieval_keys
        if model is None:
            _, model, tokenizer = open_experience_model(self.em_dir, settings=self.settings)
        self.tokenizer = tokenizer
        self.backend = open_backend(backend, model=model, tokenizer=tokenizer,
                                    **(backend_options or {}))
        self.temperature, self.max_retries, self.seed = temperature, max_retries, seed
        self.max_steps, self.write_to_store, self.policy_name = max_steps, write_to_store, policy_name
        # The model was trained with real transitions as retrieved context; synthetic ones
        # (its own past output, enriched into the store) are context only when asked for.
        self.retrieval_sources = None if retrieve_synthetic else ("real",)
        self.slots: list[_Slot] = []
        self.metrics = {"dream/steps": 0, "dream/retries": 0, "dream/invalid": 0,
                        "dream/cache_hits": 0}
        self._calls = 0
        self.cache_size = cache_size if temperature == 0 and not retrieve_synthetic else 0
        self._cache: OrderedDict[tuple, tuple[ParsedTransition, bool]] = OrderedDict()

    def _open_store(self, store):
        from dreamgym_cli.store import ReplayStore

        if store is None and self.settings.store and Path(self.settings.store).is_dir():
            store = self.settings.store
        if store is None or isinstance(store, ReplayStore):
            return store
        return ReplayStore.open(store)

    # ---- batch API ------------------------------------------------------------------------

    def reset_batch(self, tasks: list[Task],
                    exclude: Sequence[frozenset[str]] | None = None) -> list[Observation]:
        """Start one episode per task; `exclude[i]`: episode ids episode i's retrieval skips."""
        starts = self.initial_states(tasks)
        skip = list(exclude) if exclude is not None else [frozenset()] * len(tasks)
        if len(skip) != len(tasks):
            raise ValueError(f"expected {len(tasks)} exclude sets, got {len(skip)}")
        self.slots = [_Slot(task=t, episode_id=f"dream-{uuid.uuid4().hex[:16]}", state=s,
                            admissible=admissible_from_state(s), exclude=frozenset(x))
                      for t, s, x in zip(tasks, starts, skip)]
        return [Observation(s.state, s.admissible, {"task_id": s.task.task_id})
                for s in self.slots]

    def is_done(self, i: int) -> bool:
        """Whether episode i of the batch is over."""
        return self.slots[i].done

    def end_episode(self, i: int) -> None:
        """End episode i without another step (its steps stay as they are)."""
        self.slots[i].done = True

    def episode_steps(self, i: int) -> list[dict]:
        """The step rows of episode i so far (a copy)."""
        return list(self.slots[i].steps)

    def predict(self, queries: Sequence[TransitionQuery]) -> list[Prediction]:
        """The model's transition for each query, as a step would make it (retrieval, retries,
        invalid after retries; counted in `metrics`), without touching the running episodes."""
        slots = [_Slot(task=q.task, episode_id="", state=q.state, admissible=None,
                       steps=list(q.history), exclude=frozenset(q.exclude)) for q in queries]
        transitions, first_try_failed = self._predict(slots, [q.action for q in queries])
        return [Prediction(t, f) for t, f in zip(transitions, first_try_failed)]

    def step_batch(self, actions: list[str | None]) -> list[StepResult | None]:
        """Advance every slot that is not done (its action must not be None)."""
        if len(actions) != len(self.slots):
            raise ValueError(f"expected {len(self.slots)} actions, got {len(actions)}")
        active = [i for i, s in enumerate(self.slots) if not s.done]
        for i in active:
            if actions[i] is None:
                raise ValueError(f"slot {i} is running and needs an action")
        parsed, _ = self._predict([self.slots[i] for i in active], [actions[i] for i in active])
        results: list[StepResult | None] = [None] * len(self.slots)
        for i, p in zip(active, parsed):
            results[i] = self._advance(self.slots[i], actions[i], p)
        return results

    def _advance(self, slot: _Slot, action: str, p) -> StepResult:
        t = len(slot.steps)
        done, success = p.done, p.success
        limit = self.max_steps or slot.task.spec.get("max_steps")
        truncated = bool(limit) and t + 1 >= int(limit) and not done
        if truncated:
            done, success = True, False
        admissible = admissible_from_state(p.next_state)
        slot.steps.append({
            "episode_id": slot.episode_id, "t": t, "task_id": slot.task.task_id,
            "env": slot.task.env, "source": "synthetic", "state": slot.state,
            "admissible": slot.admissible, "action": action, "next_state": p.next_state,
            "reward": float(p.reward), "done": bool(done),
            "success": success if done else None, "reasoning": p.reasoning,
            "policy": self.policy_name, "created_at": now_utc(),
        })
        slot.state, slot.admissible, slot.done = p.next_state, admissible, bool(done)
        self.metrics["dream/steps"] += 1
        info = {"valid": p.valid, "error": p.error, "truncated": truncated,
                "reasoning": p.reasoning}
        return StepResult(Observation(p.next_state, admissible, info), float(p.reward),
                          bool(done), success if done else None, info)

    def _query_key(self, slot: _Slot, action: str) -> tuple:
        """Everything the prompt and the retrieval of this transition depend on."""
        history = tuple((st["state"], st["action"]) for st in slot.steps[-self.settings.history:]) \
            if self.settings.history > 0 else ()
        return (slot.task.instruction, slot.state, action, history, slot.exclude)

    def _predict(self, slots: list[_Slot],
                 actions: list[str]) -> tuple[list[ParsedTransition], list[bool]]:
        """(transition per slot, whether its first completion failed to parse); each distinct
        query not in the cache is generated once (see the module docstring)."""
        if self.cache_size <= 0:
            return self._predict_uncached(slots, actions)
        keys = [self._query_key(s, a) for s, a in zip(slots, actions)]
        todo: dict[tuple, int] = {}  # key -> index of its first slot, for keys not cached
        for i, key in enumerate(keys):
            if key not in self._cache and key not in todo:
                todo[key] = i
        if todo:
            firsts = list(todo.values())
            made, failed = self._predict_uncached([slots[i] for i in firsts],
                                                  [actions[i] for i in firsts])
            for key, transition, flag in zip(todo, made, failed):
                self._cache[key] = (transition, flag)
        self.metrics["dream/cache_hits"] += len(keys) - len(todo)
        out = [self._cache[key] for key in keys]
        for key in keys:
            self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return [t for t, _ in out], [f for _, f in out]

    def _predict_uncached(self, slots: list[_Slot],
                          actions: list[str]) -> tuple[list[ParsedTransition], list[bool]]:
        from dreamgym_cli.experience.parser import invalid_transition, parse_em_completion

        prompts = self._prompts(slots, actions)
        results: list[Any] = [None] * len(slots)
        first_try_failed: list[bool] = []
        pending = list(range(len(slots)))
        for attempt in range(self.max_retries + 1):
            temperature = self.temperature if attempt == 0 else max(self.temperature, 0.7)
            texts = self._generate([prompts[i] for i in pending], temperature)
            still = []
            for i, text in zip(pending, texts):
                parsed = parse_em_completion(text)
                if parsed.valid:
                    results[i] = parsed
                else:
                    still.append(i)
                    results[i] = parsed
            if attempt > 0:
                self.metrics["dream/retries"] += len(pending)
            else:
                first_try_failed = [not r.valid for r in results]
            pending = still
            if not pending:
                break
        for i in pending:
            self.metrics["dream/invalid"] += 1
            results[i] = invalid_transition(slots[i].state, results[i].error or "unparseable")
        return results, first_try_failed

    def _prompts(self, slots: list[_Slot], actions: list[str]) -> list[list[int]]:
        from dreamgym_cli.experience.prompt import build_em_prompt
        from dreamgym_cli.llm.sft import encode_prompt

        k = self.settings.retrieval_k
        retrieved: list[list[dict]] = [[] for _ in slots]
        if k > 0 and self.store is not None:
            queries = [{"instruction": s.task.instruction, "state": s.state, "action": a}
                       for s, a in zip(slots, actions)]
            from dreamgym_cli.experience.examples import retrieve_grouped

            retrieved = retrieve_grouped(self.store, queries, [s.exclude for s in slots], k,
                                         self.retrieval_sources, self.retrieval_keys)
        count = lambda text: len(self.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
        out = []
        for slot, action, ctx in zip(slots, actions, retrieved):
            history = [(st["state"], st["action"]) for st in slot.steps][-self.settings.history:] \
                if self.settings.history > 0 else []
            text = build_em_prompt(slot.task.instruction, ctx, history, slot.state, action,
                                   history_budget_tokens=self.settings.history_budget_tokens,
                                   count_tokens=count)
            out.append(cut_prompt(encode_prompt(self.tokenizer, text), self.settings))
        return out

    def _generate(self, prompts: list[list[int]], temperature: float) -> list[str]:
        from dreamgym_cli.llm.generate import GenerationParams

        self._calls += 1
        seed = None if self.seed is None else self.seed * 100_003 + self._calls
        params = GenerationParams(max_new_tokens=self.settings.max_new_tokens,
                                  temperature=temperature, seed=seed)
        return [c[0].text for c in self.backend.generate(prompts, params)]

    # ---- initial states, the model and the store (for the curriculum and the trainer) ------

    def start_states(self, tasks: Sequence[Task]) -> dict[str, StartState]:
        """{task_id: (state, admissible)}: where this env would start each task."""
        starts = self.initial_states(list(tasks))
        return {t.task_id: start_state(s) for t, s in zip(tasks, starts)}

    def backend_and_tokenizer(self) -> tuple[Any, Any]:
        """The experience model's generation backend and tokenizer (the weights in memory)."""
        return self.backend, self.tokenizer

    def replay_store(self):
        """The replay store this env retrieves from (and writes to), or None."""
        return self.store

    def initial_states(self, tasks: list[Task]) -> list[str]:
        """Each task's initial state (`resolve_start_state` over the store's real t=0 states),
        else the state a reset of its real env gives."""
        if not hasattr(self, "_initial_cache"):
            self._initial_cache = real_start_states(self.store)
        out = []
        for task in tasks:
            found = resolve_start_state(task, self._initial_cache)
            out.append(found[0] if found is not None else self._reset_real(task))
        return out

    def _reset_real(self, task: Task) -> str:
        from dreamgym_cli.envs.real import make_real_env

        try:
            env = make_real_env(task.env)
        except InputError:
            raise InputError(f"task {task.task_id!r} has no known initial state: the store holds "
                             "no real episode of it and its env cannot be reset here",
                             field="task_id") from None
        try:
            return env.reset(task).text
        finally:
            env.close()

    # ---- store, single-episode protocol, cleanup ------------------------------------------

    def finished_episodes(self) -> list[EpisodeRecord]:
        """(task row, episode row, step rows) of the finished slots, as the store wants them."""
        return [episode_record(s.task, s.steps, episode_id=s.episode_id, source="synthetic",
                               policy=self.policy_name, success=s.steps[-1]["success"])
                for s in self.slots if s.done and s.steps]

    def flush_to_store(self) -> int:
        """Append the finished synthetic episodes to the store (when write_to_store)."""
        if not (self.write_to_store and self.store is not None):
            return 0
        records = self.finished_episodes()
        if not records:
            return 0
        return self.store.append_episodes(records).episodes_added

    def reset(self, task: Task) -> Observation:
        return self.reset_batch([task])[0]

    def step(self, action: str) -> StepResult:
        result = self.step_batch([action])[0]
        if result is None:
            raise RuntimeError("the episode is over; reset first")
        return result

    def close(self) -> None:
        self.backend.close()
