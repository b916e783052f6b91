"""Agent trajectories published as chat conversations, mapped to canonical episodes.

One mapping serves the conversation formats of the field; they differ in key names only:

| format        | id key      | turns                          | outcome / provenance            |
|---------------|-------------|--------------------------------|---------------------------------|
| agentgym      | `item_id`   | `conversations`: from/value/loss | `reward`, `success`           |
| agentinstruct | `id`        | `conversations`: from/value/loss or role/content | —             |
| eto           | `id`        | `conversations`: from/value    | `reward`, free-text `source`    |
| openai        | (none)      | `messages`: role/content       | `reward`, `success` if present  |
| sharegpt      | `id`        | `conversations`: from/value    | —                               |

How a conversation becomes transitions (`conversation_episode`):

- Roles: human/user/observation/tool/function are the environment, gpt/assistant are the agent,
  system is the system prompt (never a state, never the task).
- Which agent turns are actions: where turns carry `loss`, exactly the `loss: true` ones (the
  acknowledgement and in-prompt one-shot example turns are `loss: false`). Without `loss`, the
  acknowledgement of the system prompt ("OK. I'll follow your instructions ...") is skipped, and
  when a human turn opens a new task ("Here is your task.", "Now, I will start a new problem
  ...") the episode starts at the last such turn: what came before is a one-shot example.
- The state before an action is the human turns since the previous action; a leading
  `Observation:` label is removed at every t alike. The task instruction is the first state
  (ALFWorld's "Your task is to: ..." sentence where there is one), never the system prompt.
- An agent turn in ReAct form (`Thought:`/`Action:` in any case, `THOUGHT`/`ACTION`,
  `Think:`/`Act:`, numbered `Action 2:`, `<think>` tags) is split: the text after the last action
  label is the action, the thought before it is the step's `reasoning`.
- `reward`/`success` of the record are the last step's outcome (and the episode's return);
  unknown outcomes stay null. A final "Episode finished, reward = ..." observation (FireAct) is
  read when the record has no `reward`.
- Everything else in the record (its id, a free-text `source`, keys we have no column for) goes
  to each step's `metadata` JSON with the format, file name and line, so nothing is dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import SOURCES

CONVERSATION_FORMATS = ("agentgym", "agentinstruct", "eto", "openai", "sharegpt")
TURN_KEYS = ("conversations", "conversation", "messages")
ID_KEYS = ("item_id", "id", "conversation_id", "task_id")
_ENV_ROLES = {"human", "user", "observation", "tool", "function", "ipython", "environment"}
_AGENT_ROLES = {"gpt", "assistant", "chatgpt", "bard", "bing", "model", "function_call"}
_CONSUMED = {"reward", "success", "env", "policy", "model", "episode_id"}
_ITEM_ID = re.compile(r"^(?P<env>[A-Za-z][\w-]*?)_(?P<idx>\d+)$")

_ACTION = re.compile(r"(?i)(?:^|(?<=\s))(?:action|act)(?:[ \t]*\d+)?[ \t]*:")
_THOUGHT = re.compile(r"(?i)^\s*(?:thought|think|thinking|reasoning)(?:[ \t]*\d+)?[ \t]*:\s*")
_THINK_TAG = re.compile(r"(?is)<think>(.*?)</think>")
_ACTION_TAG = re.compile(r"(?is)<action>(.*?)</action>")
_OBSERVATION = re.compile(r"(?i)^\s*observation(?:[ \t]*\d+)?[ \t]*:[ \t]*\n?")
_ACK = re.compile(r"(?i)^\s*(ok|okay|sure|understood|got it|alright|i understand|i will|i'll|"
                  r"yes)\b")
_TASK_START = re.compile(r"(?i)^\s*(here is (your|the) (new )?task\b|now,? i will start a new "
                         r"problem\b|task description\s*:)")
_TASK_SENTENCE = re.compile(r"(?is)(?:your task is to|my problem is)\s*:\s*(.+)")
_FINISHED = re.compile(r"(?i)episode finished,\s*reward\s*=\s*(true|false|-?\d+(?:\.\d+)?)")


def split_react(text: str) -> tuple[str | None, str]:
    """(reasoning or None, action) of one agent turn; the whole text is the action otherwise."""
    reasoning = None
    think = _THINK_TAG.search(text)
    if think:
        reasoning = think.group(1).strip() or None
        text = text[: think.start()] + text[think.end():]
    tagged = _ACTION_TAG.search(text)
    if tagged:
        return reasoning, tagged.group(1).strip()
    marks = list(_ACTION.finditer(text))
    if not marks:
        return reasoning, text.strip()
    last = marks[-1]
    action = text[last.end():].strip()
    if not action:
        return reasoning, text.strip()
    thought = _THOUGHT.sub("", text[: last.start()], count=1).strip()
    return (reasoning or thought or None), action


def observation_text(text: str) -> str:
    """A state with a leading `Observation:` label removed (so every t reads alike)."""
    return _OBSERVATION.sub("", text, count=1).strip()


# ----------------------------------------------------------------------------------------------
# Shapes


def looks_like_conversation(obj: Any) -> bool:
    return isinstance(obj, dict) and any(isinstance(obj.get(k), list) for k in TURN_KEYS)


def conversation_flavour(obj: dict) -> str:
    """Which of CONVERSATION_FORMATS a record is in (by its keys; the mapping is the same)."""
    if "item_id" in obj:
        return "agentgym"
    if isinstance(obj.get("messages"), list):
        return "openai"
    turns = obj.get("conversations") or obj.get("conversation") or []
    first = turns[0] if turns and isinstance(turns[0], dict) else {}
    if "source" in obj or "game_file" in obj or ("reward" in obj and "id" in obj):
        return "eto"
    if "id" in obj and ("loss" in first or "role" in first):
        return "agentinstruct"
    return "sharegpt"


# ----------------------------------------------------------------------------------------------
# The mapping


def conversation_episode(item: Any, fmt: str, *, env: str | None = None,
                         source: str | None = None, file_name: str = "",
                         line: int = 0) -> tuple[dict | None, str | None]:
    """A canonical episode object from one conversation record, or (None, why not).

    Raises InputError naming the field when the record is malformed.
    """
    if not isinstance(item, dict):
        raise InputError(f"expected an object, got {type(item).__name__}", field="item")
    key = next((k for k in TURN_KEYS if k in item), None)
    if key is None:
        raise InputError(f"expected a list of turns under one of {', '.join(TURN_KEYS)}; the "
                         f"record has keys {', '.join(sorted(map(str, item))) or 'none'}",
                         field=TURN_KEYS[0])
    turns = _turns(item[key], key)
    raw_id, id_key = _raw_id(item)
    actions, start = _action_turns(turns)
    if not actions:
        return None, f"record {raw_id!r} has no agent turn to learn from"
    prompt = [i for i in range(start, actions[0]) if turns[i][0] == "env"]
    if not prompt:
        raise InputError("expected a human/user turn (the task and first observation) before "
                         "the first agent action", field=f"{key}[{actions[0]}]")
    states = [observation_text(turns[prompt[-1]][1])]
    for k, i in enumerate(actions):
        end = actions[k + 1] if k + 1 < len(actions) else len(turns)
        states.append("\n\n".join(observation_text(v) for role, v, _ in turns[i + 1:end]
                                  if role == "env"))
    reward, success = _outcome(item, states[-1])
    env_name, task_id, spec = _task_identity(item, raw_id, id_key, env, states[0])
    metadata = _provenance(item, key, fmt, file_name, line)
    last = len(actions) - 1
    steps = []
    for k, i in enumerate(actions):
        reasoning, action = split_react(turns[i][1])
        steps.append({"t": k, "state": states[k], "action": action, "reasoning": reasoning,
                      "next_state": states[k + 1], "admissible": None,
                      "reward": reward if k == last else None, "done": k == last,
                      "success": success if k == last else (None if success is None else False),
                      "metadata": metadata})
    digest = hashlib.sha256(json.dumps([item[key], reward, success], sort_keys=True,
                                       default=str).encode()).hexdigest()[:12]
    record_source = item.get("source")
    return {
        "schema_version": 1,
        "episode_id": str(item.get("episode_id") or f"{task_id}-{digest}"),
        "task": {"task_id": task_id, "env": env_name, "instruction": _instruction(states[0]),
                 "spec": spec},
        "source": record_source if record_source in SOURCES else (source or "real"),
        "policy": str(item.get("policy") or item.get("model") or fmt),
        "return": reward,
        "success": success,
        "steps": steps,
    }, None


def _turns(raw: Any, key: str) -> list[tuple[str, str, bool | None]]:
    """(role: env|agent|system, text, loss) per turn."""
    if not isinstance(raw, list):
        raise InputError(f"expected a list of turns, got {type(raw).__name__}", field=key)
    turns = []
    for i, turn in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise InputError(f"expected an object, got {type(turn).__name__}", field=where)
        role_key = "from" if "from" in turn else "role"
        role = turn.get(role_key)
        kind = ("env" if role in _ENV_ROLES else "agent" if role in _AGENT_ROLES
                else "system" if role == "system" else None)
        if kind is None:
            keys = ", ".join(sorted(map(str, turn)))
            raise InputError(f"expected a role (human/user/gpt/assistant/system/tool) under "
                             f"'from' or 'role', got {role!r} (turn keys: {keys})",
                             field=f"{where}.{role_key}")
        turns.append((kind, _turn_text(turn, where), _loss(turn, where)))
    return turns


def _turn_text(turn: dict, where: str) -> str:
    text_key = "value" if "value" in turn else "content"
    value = turn.get(text_key)
    if isinstance(value, list):  # OpenAI content parts
        value = "".join(p.get("text", "") for p in value if isinstance(p, dict))
    if value is None and turn.get("tool_calls"):  # OpenAI function calling: the call is the action
        calls = [c.get("function", {}) for c in turn["tool_calls"] if isinstance(c, dict)]
        value = "\n".join(f"Action: {c.get('name')}({c.get('arguments', '')})" for c in calls)
    if not isinstance(value, str):
        raise InputError(f"expected a string under 'value' or 'content', got "
                         f"{type(value).__name__}", field=f"{where}.{text_key}")
    return value


def _loss(turn: dict, where: str) -> bool | None:
    loss = turn.get("loss")
    if loss is not None and not isinstance(loss, bool):
        raise InputError(f"expected true, false or null, got {loss!r}", field=f"{where}.loss")
    return loss


def _action_turns(turns: list[tuple[str, str, bool | None]]) -> tuple[list[int], int]:
    """(indices of the agent turns that are actions, index where the episode's prompt starts)."""
    if any(role == "agent" and loss is not None for role, _, loss in turns):
        return [i for i, (role, _, loss) in enumerate(turns) if role == "agent" and loss], 0
    starts = [i for i, (role, text, _) in enumerate(turns)
              if role == "env" and _TASK_START.match(observation_text(text))]
    start = starts[-1] if starts else 0
    agent = [i for i in range(start, len(turns)) if turns[i][0] == "agent"]
    if agent and _is_acknowledgement(turns, agent[0]):
        agent = agent[1:]
    return agent, start


def _is_acknowledgement(turns: list[tuple[str, str, bool | None]], i: int) -> bool:
    """The agent's "OK" to the system prompt: before any task observation, no action label."""
    text = turns[i][1]
    env_before = sum(1 for role, _, _ in turns[:i] if role == "env")
    return (env_before <= 1 and i + 1 < len(turns) and len(text) <= 200
            and not _ACTION.search(text) and bool(_ACK.match(text)))


def _raw_id(item: dict) -> tuple[Any, str | None]:
    for k in ID_KEYS:
        value = item.get(k)
        if isinstance(value, bool) or value is None or value == "":
            continue
        if not isinstance(value, (str, int)):
            raise InputError(f"expected a string or integer id, got {type(value).__name__}",
                             field=k)
        return value, k
    return None, None


def _task_identity(item: dict, raw_id: Any, id_key: str | None, env: str | None,
                   first_state: str) -> tuple[str, str, dict[str, Any]]:
    """(env, task_id, spec) from the record's env/id, --env, or an '<env>_<n>' id."""
    text_id = None if raw_id is None else str(raw_id).strip()
    match = _ITEM_ID.match(text_id) if text_id else None
    record_env = item.get("env") if isinstance(item.get("env"), str) else None
    env_name = record_env or env or (match["env"] if match else None)
    if not env_name:
        what = f"from {id_key} {raw_id!r} (expected '<env>_<index>')" if id_key else \
            "(the record has no env and no id like 'webshop_6')"
        raise InputError(f"cannot tell the env {what}; pass --env", field=id_key or "env")
    spec: dict[str, Any] = {}
    if text_id:
        spec[id_key] = raw_id
        if match:
            spec["data_idx"] = int(match["idx"])
        elif text_id.isdigit():
            spec["data_idx"] = int(text_id)
    if isinstance(item.get("game_file"), str):
        spec["game_file"] = item["game_file"]
    if match:
        task_id = text_id
    elif text_id:
        task_id = f"{env_name}_{text_id}"
    else:
        task_id = f"{env_name}-{hashlib.sha256(first_state.encode()).hexdigest()[:12]}"
    return env_name, task_id, spec


def _instruction(first_state: str) -> str:
    sentence = _TASK_SENTENCE.search(first_state)
    return sentence.group(1).strip() if sentence else first_state


def _outcome(item: dict, last_state: str) -> tuple[float | None, bool | None]:
    reward = item.get("reward")
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, (int, float))):
        raise InputError(f"expected a number, got {type(reward).__name__}", field="reward")
    success = item.get("success")
    if success in (0, 1) and not isinstance(success, bool):
        success = bool(success)
    if success is not None and not isinstance(success, bool):
        raise InputError(f"expected true/false or 0/1, got {success!r}", field="success")
    if reward is None:
        finished = _FINISHED.search(last_state)
        if finished:
            value = finished.group(1).lower()
            reward = 1.0 if value == "true" else 0.0 if value == "false" else float(value)
    if success is None and reward is not None:
        success = reward >= 1.0  # AgentGym, ETO and FireAct count an episode solved at reward 1
    return (None if reward is None else float(reward)), success


def _provenance(item: dict, key: str, fmt: str, file_name: str, line: int) -> dict[str, Any]:
    """Where the record came from, with every key of it we keep no column for."""
    record = {k: v for k, v in item.items() if k != key and not (
        k in _CONSUMED or (k == "source" and v in SOURCES))}
    return {"format": fmt, "file": file_name, "line": line, "record": record}
