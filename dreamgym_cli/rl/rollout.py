"""The rollout engine: many episodes at once over a batch env (the dream env or `VectorEnv`).

Per turn, for the episodes still running: build the agent prompts (history budget in the policy's
own tokens), encode them with `sft.encode_prompt` (the way SFT encodes them), sample every answer
in ONE `backend.generate` call, parse the actions and step the env batch. Each turn keeps the
prompt ids, the sampled token ids and their log-probs (at the sampling temperature) exactly as generated: the trainer
trains on those ids, never on a decode-and-re-tokenize of the text.

An action outside the admissible list is passed to the env as is (the env decides; `free`, the
default) or replaced by the most similar listed action (`action_interface="listed"`), and counted
either way (`rollout/invalid_action_rate` is the share of *generated* actions that were not
listed); an answer without `<action>` tags is counted as a format error.
Episodes stop when the env says done, at `max_turns`, or when a real-step budget runs out (the
episodes that would overrun it are cut before they act: the budget is never exceeded). An episode
cut by a step limit (ours, or the env's own: `info["truncated"]`) is `truncated`, and keeps the
prompt of the state it was cut in (`final_prompt_ids`) so PPO can bootstrap its value there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from dreamgym_cli.envs.base import clean_action
from dreamgym_cli.schema import EpisodeRecord, Task, episode_record, now_utc

ACTION_STOP = "</action>"


@dataclasses.dataclass
class Turn:
    """One policy decision and what the env made of it."""

    state: str
    admissible: list[str] | None
    prompt_ids: list[int]
    token_ids: list[int]  # sampled answer tokens (through the stop string / EOS)
    logprobs: list[float]  # log-probs of token_ids under logits / temperature (as sampled)
    text: str
    action: str  # what the env was sent (the listed action it snapped to, with `listed`)
    valid_format: bool
    in_admissible: bool | None  # the *generated* action was listed; None: the env lists none
    next_state: str = ""
    reward: float = 0.0
    done: bool = False
    success: bool | None = None
    reasoning: str | None = None  # the experience model's, for dream steps


@dataclasses.dataclass
class EpisodeRollout:
    task: Task
    group: int  # index of the task draw; the G episodes of one draw form a GRPO group
    episode_id: str
    turns: list[Turn] = dataclasses.field(default_factory=list)
    truncated: bool = False  # cut by max_turns or the real-step budget, not ended by the env
    final_prompt_ids: list[int] | None = None  # a cut episode's next prompt (PPO's bootstrap)

    @property
    def total_return(self) -> float:
        return float(sum(t.reward for t in self.turns))

    @property
    def success(self) -> bool:
        return bool(self.turns) and self.turns[-1].done and bool(self.turns[-1].success)

    @property
    def length(self) -> int:
        return len(self.turns)


@dataclasses.dataclass(frozen=True)
class RolloutSettings:
    think: bool = False
    history_budget_tokens: int = 256
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    max_turns: int | None = None
    seed: int = 0
    action_interface: str = "free"  # free: as generated; listed: snapped to a listed action


def turn_seed(seed: int, call: int, turn: int) -> int:
    """The generation seed of one turn of one rollout call (fixed, so reruns are identical)."""
    return ((seed * 1_000_003 + call) * 10_007 + turn) % (2**31 - 1)


def episode_ids(namespace: str | None, call: int, tasks: Sequence[Task]) -> list[str]:
    """Ids of the episodes of one call, in draw order: random without a namespace, else a
    function of (namespace, call, draw index, task id), so a seeded rerun names its episodes
    as the first run did (and the store skips them as duplicates)."""
    if namespace is None:
        return [f"roll-{uuid.uuid4().hex[:16]}" for _ in tasks]
    return ["roll-" + hashlib.sha256(f"{namespace}\0{call}\0{i}\0{t.task_id}".encode())
            .hexdigest()[:16] for i, t in enumerate(tasks)]


def run_rollouts(env, backend, tokenizer, tasks: list[Task], settings: RolloutSettings, *,
                 group_size: int = 1, call: int = 0, max_env_steps: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 id_namespace: str | None = None) -> list[EpisodeRollout]:
    """`group_size` episodes of every task in `tasks`, run together in `env`.

    call: a counter (the training iteration) that makes each call's sampling seeds distinct.
    max_env_steps: a budget of env steps for this call (sim-to-real); never exceeded.
    progress(turn, running): called after every turn.
    id_namespace: makes the episode ids reproducible (see `episode_ids`); None: random ids.
    """
    from dreamgym_cli.rl.policy import token_counter

    draws = [(g, task) for g, task in enumerate(tasks) for _ in range(group_size)]
    if not draws:
        return []
    observations = list(env.reset_batch([task for _, task in draws]))
    ids = episode_ids(id_namespace, call, [task for _, task in draws])
    episodes = [EpisodeRollout(task, g, i) for (g, task), i in zip(draws, ids)]
    count = token_counter(tokenizer)
    active, budget, turn = list(range(len(draws))), max_env_steps, 0
    while active:
        if settings.max_turns is not None and turn >= settings.max_turns:
            break
        if budget is not None and len(active) > budget:
            for i in active[budget:]:
                episodes[i].truncated = True
            active = active[:budget]
            if not active:
                break
        actions = _decide(backend, tokenizer, count, settings, episodes, observations, active,
                          turn_seed(settings.seed, call, turn))
        results = env.step_batch(actions)
        for i in active:
            observations[i] = _record(episodes[i].turns[-1], results[i])
            if (results[i].info or {}).get("truncated"):  # the env's own step limit ended it
                episodes[i].truncated = True
                episodes[i].final_prompt_ids = _prompt_ids(tokenizer, count, settings,
                                                           episodes[i], observations[i])
        if budget is not None:
            budget -= len(active)
        active = [i for i in active if not episodes[i].turns[-1].done]
        turn += 1
        if progress is not None:
            progress(turn, len(active))
    for i in active:
        episodes[i].truncated = True
        episodes[i].final_prompt_ids = _prompt_ids(tokenizer, count, settings, episodes[i],
                                                   observations[i])
    return episodes


def _prompt_ids(tokenizer, count, settings: RolloutSettings, episode: EpisodeRollout, obs
                ) -> list[int]:
    """The agent prompt for `obs`, after the episode's turns so far, as token ids."""
    from dreamgym_cli.llm.sft import encode_prompt
    from dreamgym_cli.rl.agent_prompt import build_agent_prompt

    history = [(t.state, t.action) for t in episode.turns]
    text = build_agent_prompt(episode.task.instruction, history, obs.text, obs.admissible,
                              think=settings.think,
                              history_budget_tokens=settings.history_budget_tokens,
                              count_tokens=count)
    return encode_prompt(tokenizer, text)


def _decide(backend, tokenizer, count, settings: RolloutSettings, episodes, observations,
            active: list[int], seed: int) -> list[str | None]:
    """Sample one answer per active episode (one generate call); append its Turn; the actions."""
    from dreamgym_cli.llm.generate import GenerationParams
    from dreamgym_cli.rl.agent_prompt import parse_action

    prompt_ids = [_prompt_ids(tokenizer, count, settings, episodes[i], observations[i])
                  for i in active]
    params = GenerationParams(max_new_tokens=settings.max_new_tokens,
                              temperature=settings.temperature, top_p=settings.top_p,
                              stop=(ACTION_STOP,), seed=seed)
    completions = backend.generate(prompt_ids, params)
    actions: list[str | None] = [None] * len(episodes)
    for i, ids, (c,) in zip(active, prompt_ids, completions):
        obs = observations[i]
        parsed = parse_action(_answer_text(tokenizer, c))
        action = clean_action(parsed.action)
        allowed = None if obs.admissible is None else action in obs.admissible
        if settings.action_interface == "listed" and allowed is False and obs.admissible:
            action = closest_listed(action, obs.admissible)
        episodes[i].turns.append(Turn(
            state=obs.text, admissible=obs.admissible, prompt_ids=list(c.prompt_ids or ids),
            token_ids=list(c.token_ids), logprobs=list(c.logprobs), text=c.text,
            action=action, valid_format=parsed.valid_format, in_admissible=allowed))
        actions[i] = action
    return actions


ACTION_INTERFACES = ("free", "listed")


def closest_listed(action: str, admissible: list[str]) -> str:
    """The listed action most similar to `action` (difflib's ratio, case-folded; the first of
    equals): the `listed` interface sends the env one of the actions it offers, as AgentGym's
    ALFWorld/WebShop wrappers do, so a policy cannot stall on an action the game refuses."""
    import difflib

    wanted = action.lower()
    return max(admissible, key=lambda a: difflib.SequenceMatcher(None, wanted, a.lower()).ratio())


def _answer_text(tokenizer, completion) -> str:
    """The completion with its `</action>` back when the model produced it (text stops before
    the stop string); a tag left open at the token limit stays open (a format error)."""
    text = completion.text
    if completion.finish_reason == "stop" and ACTION_STOP not in text and ACTION_STOP in \
            tokenizer.decode(completion.token_ids, skip_special_tokens=False):
        return text + ACTION_STOP
    return text


def _record(turn: Turn, result) -> Any:
    """Fill a turn from its StepResult; the next observation."""
    turn.next_state = result.observation.text
    turn.reward = float(result.reward)
    turn.done = bool(result.done)
    turn.success = result.success if result.done else None
    turn.reasoning = (result.info or {}).get("reasoning")
    return result.observation


# ---- metrics and store rows ------------------------------------------------------------------


def rollout_metrics(episodes: list[EpisodeRollout]) -> dict[str, float]:
    """rollout/* metrics of a batch of episodes."""
    turns = [t for e in episodes for t in e.turns]
    judged = [t for t in turns if t.in_admissible is not None]
    n = max(len(episodes), 1)
    return {
        "rollout/episodes": len(episodes),
        "rollout/turns": len(turns),
        "rollout/success_rate": sum(e.success for e in episodes) / n,
        "rollout/return_mean": sum(e.total_return for e in episodes) / n,
        "rollout/length_mean": sum(e.length for e in episodes) / n,
        "rollout/truncated_rate": sum(e.truncated for e in episodes) / n,
        "rollout/invalid_action_rate": (sum(not t.in_admissible for t in judged) / len(judged)
                                        if judged else 0.0),
        "rollout/format_error_rate": (sum(not t.valid_format for t in turns) / len(turns)
                                      if turns else 0.0),
        "rollout/completion_tokens": sum(len(t.token_ids) for t in turns),
    }


def episode_records(episodes: list[EpisodeRollout], source: str, policy: str
                    ) -> list[EpisodeRecord]:
    """(task row, episode row, step rows) per episode with at least one turn, for the store."""
    out = []
    for e in episodes:
        if not e.turns:
            continue
        steps = [{"t": k, "state": t.state, "admissible": t.admissible, "action": t.action,
                  "next_state": t.next_state, "reward": t.reward, "done": t.done,
                  "success": t.success, "reasoning": t.reasoning, "created_at": now_utc()}
                 for k, t in enumerate(e.turns)]
        out.append(episode_record(e.task, steps, episode_id=e.episode_id, source=source,
                                  policy=policy, success=e.success if e.turns[-1].done else None))
    return out


def append_to_store(store, records: Sequence[EpisodeRecord]) -> int:
    """Append episode records to a replay store; the number of episodes added."""
    if not records:
        return 0
    return store.append_episodes(records).episodes_added


# ---- batch envs by name ----------------------------------------------------------------------


def open_batch_env(name: str, *, max_steps: int | None = None, workers: int | None = None,
                   store=None, seed: int | None = None, policy_name: str = "policy",
                   retrieve_synthetic: bool = False, ray: str | None = None):
    """A batch env by name: `dream:EM_DIR` (the experience model), else real envs in workers
    (processes, or Ray actors when `ray` names a cluster: 'local' or an address)."""
    from dreamgym_cli.envs.registry import check_env_name, is_dream_name, make_env
    from dreamgym_cli.envs.vector import VectorEnv

    if is_dream_name(name) and ray:
        from dreamgym_cli.scale.ray_env import RayDreamEnv

        return RayDreamEnv(name, address=ray, store=None if store is None else str(store.path),
                           max_steps=max_steps, seed=seed, policy_name=policy_name,
                           retrieve_synthetic=retrieve_synthetic)
    if is_dream_name(name):
        return make_env(name, store=store, max_steps=max_steps, seed=seed,
                        policy_name=policy_name, retrieve_synthetic=retrieve_synthetic)
    check_env_name(name)  # an unknown name fails here, with its did-you-mean, not in a worker
    kwargs = {} if max_steps is None else {"max_steps": max_steps}
    if ray:
        from dreamgym_cli.scale.ray_env import RayVectorEnv

        return RayVectorEnv(name, address=ray, workers=workers, **kwargs)
    return VectorEnv(name, workers=workers, **kwargs)
