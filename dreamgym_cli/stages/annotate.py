"""`dreamgym annotate`: fill the reasoning of real transitions.

Two annotators, never mixed silently (each row records which one wrote it, and the run manifest
says which ran):

- `rules` (offline, default): a deterministic explanation of the observed effect of the action
  (location, inventory and object changes, feedback, why the score changed, why the action had no
  effect, why the episode ended) — `experience.annotate_rules.explain_transition`.
- a teacher LLM behind any OpenAI-compatible server (`--teacher-url`, `--teacher-model`): one chat
  request per episode in the paper's style, a short task tutorial plus one transition plan per
  step. Answers are cached by the episode's content hash (a re-run, or a run after a crash, asks
  only for episodes not yet annotated by that teacher), requests are rate-limited and retried.

Segments are immutable, so reasoning lives in an `annotations` table keyed by the step's content
hash; readers overlay it on the steps (`experience.episodes.load_reasoning`). A step that already carries reasoning
(ingested with it) is left alone.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from dreamgym_cli.artifacts import write_run_record
from dreamgym_cli.config import option, require_paths, to_dict
from dreamgym_cli.errors import InputError
from dreamgym_cli.experience.episodes import ANNOTATIONS

RULES_ANNOTATOR = "rules-v1"
ANNOTATION_SCHEMA = pa.schema([
    pa.field("content_hash", pa.string(), nullable=False),  # the step's
    pa.field("episode_hash", pa.string(), nullable=False),  # cache key of a teacher answer
    pa.field("episode_id", pa.string(), nullable=False),
    pa.field("t", pa.int32(), nullable=False),
    pa.field("reasoning", pa.string()),  # null: the teacher gave no plan for this step
    pa.field("annotator", pa.string(), nullable=False),
    pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
])


@dataclasses.dataclass(frozen=True)
class AnnotateConfig:
    store: Path = option(None, help="Replay store to annotate.")
    teacher_url: str | None = option(None, help="OpenAI-compatible base URL of a teacher LLM "
                                     "(e.g. http://127.0.0.1:8000/v1); default: offline rules.")
    teacher_model: str | None = option(None, help="Model name to ask at --teacher-url.")
    api_key_env: str = option("OPENAI_API_KEY", help="Env var holding the teacher's API key.")
    requests_per_second: float = option(4.0, help="Teacher rate limit.")
    concurrency: int = option(4, help="Teacher requests in flight at once.")
    timeout: float = option(120.0, help="Seconds before a teacher request is abandoned.")
    max_retries: int = option(3, help="Retries of a failed teacher request (with backoff).")
    batch_episodes: int = option(64, help="Episodes per committed batch (resumability).")
    source: str = option("real", help="Which transitions to annotate: real, synthetic or all.")

    def __post_init__(self):
        require_paths(self, "store")
        if (self.teacher_url is None) != (self.teacher_model is None):
            raise InputError("--teacher-url and --teacher-model go together", field="teacher_model")
        if self.source not in ("real", "synthetic", "all"):
            raise InputError(f"expected real, synthetic or all, got {self.source!r}",
                             field="source")

    @property
    def annotator(self) -> str:
        if self.teacher_url is None:
            return RULES_ANNOTATOR
        return f"teacher:{self.teacher_model}@{self.teacher_url}"


def _done_keys(store, annotator: str) -> tuple[set[str], set[str]]:
    table = store.read_table(ANNOTATIONS)
    if table is None or table.num_rows == 0:
        return set(), set()
    rows = table.filter(pa.compute.equal(table.column("annotator"), annotator))
    return set(rows.column("content_hash").to_pylist()), set(rows.column("episode_hash").to_pylist())


def run(config: AnnotateConfig, progress=None) -> dict[str, Any]:
    from dreamgym_cli.store import ReplayStore

    store = ReplayStore.open(config.store)
    started = time.perf_counter()
    where = None if config.source == "all" else f"source = '{config.source}'"
    done_steps, done_episodes = _done_keys(store, config.annotator)
    todo = []
    skipped_with_reasoning = 0
    for task, episode, steps in store.iter_episodes(where=where):
        if task is None or episode["content_hash"] in done_episodes:
            continue
        if all(s.get("reasoning") for s in steps):
            skipped_with_reasoning += len(steps)
            continue
        if config.teacher_url is None and all(s["content_hash"] in done_steps for s in steps):
            continue
        todo.append((task, episode, steps))
    annotate = _rules_rows if config.teacher_url is None else _Teacher(config).rows
    written = missing = 0
    for i in range(0, len(todo), config.batch_episodes):
        chunk = todo[i:i + config.batch_episodes]
        rows = _annotate_chunk(annotate, chunk, config)
        missing += sum(1 for r in rows if not r["reasoning"])
        if rows:
            store.append_table(ANNOTATIONS, pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA))
        written += len(rows)
        if progress is not None:
            progress(min(i + config.batch_episodes, len(todo)), len(todo), {})
    metrics = {"annotator": config.annotator, "episodes": len(todo), "steps_annotated": written,
               "steps_without_plan": missing, "steps_already_reasoned": skipped_with_reasoning,
               "seconds": round(time.perf_counter() - started, 2)}
    write_run_record(store.path / "manifests", "annotate", to_dict(config), metrics,
                     outputs=[str(store.path)])
    return {"store": str(config.store), **metrics}


def _annotate_chunk(annotate, chunk, config: AnnotateConfig) -> list[dict]:
    if config.teacher_url is None:
        return [r for ep in chunk for r in annotate(*ep)]
    with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
        return [r for rows in pool.map(lambda ep: annotate(*ep), chunk) for r in rows]


def _row(step: dict, episode: dict, reasoning: str | None, annotator: str) -> dict:
    return {"content_hash": step["content_hash"], "episode_hash": episode["content_hash"],
            "episode_id": episode["episode_id"], "t": step["t"], "reasoning": reasoning,
            "annotator": annotator, "created_at": datetime.now(timezone.utc)}


def _rules_rows(task: dict, episode: dict, steps: list[dict]) -> list[dict]:
    from dreamgym_cli.experience.annotate_rules import explain_transition

    return [_row(s, episode, explain_transition(task["instruction"], s["state"], s["action"],
                                                s["next_state"], s["reward"], s["done"],
                                                s["success"]), RULES_ANNOTATOR)
            for s in steps if not s.get("reasoning")]


# ----------------------------------------------------------------------------------------------
# Teacher (OpenAI-compatible chat completions)

TEACHER_SYSTEM = (
    "You explain how a text environment works. Given a task and a real trajectory, write a short "
    "tutorial of the task, then for every step explain, before seeing its outcome, what the "
    "action should do in this state and why, so that the listed next state and reward follow."
)
_STEP_LINE = re.compile(r"^\s*Step\s+(\d+)\s*[:.)-]\s*(.*)$", re.IGNORECASE)


def teacher_prompt(task: dict, steps: list[dict]) -> str:
    lines = [f"Task: {task['instruction']}", ""]
    for s in steps:
        lines += [f"Step {s['t']}:", f"State:\n{s['state']}", f"Action: {s['action']}",
                  f"Next state:\n{s['next_state']}", f"Reward: {s['reward']}",
                  f"Done: {s['done']}", ""]
    lines.append("Answer in this form:\nTutorial: <2-3 sentences>\n" +
                 "\n".join(f"Step {s['t']}: <plan and expected effect>" for s in steps))
    return "\n".join(lines)


def parse_teacher_answer(text: str, n_steps: int) -> tuple[str, dict[int, str]]:
    """(tutorial, {t: plan}); steps the answer does not cover are simply absent."""
    tutorial, plans, current = "", {}, None
    for line in (text or "").splitlines():
        m = _STEP_LINE.match(line)
        if m:  # a step the episode lacks starts no plan, and must not extend the previous one
            current = int(m.group(1)) if int(m.group(1)) < n_steps else None
            if current is not None:
                plans[current] = m.group(2).strip()
        elif line.lower().startswith("tutorial:"):
            tutorial, current = line.split(":", 1)[1].strip(), None
        elif current is not None and line.strip():
            plans[current] = (plans[current] + " " + line.strip()).strip()
    return tutorial, {t: p for t, p in plans.items() if p}


class _Teacher:
    def __init__(self, config: AnnotateConfig):
        import os

        import httpx

        self.config = config
        headers = {}
        if os.environ.get(config.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[config.api_key_env]}"
        self.client = httpx.Client(base_url=config.teacher_url.rstrip("/"), headers=headers,
                                   timeout=config.timeout)
        self.lock = threading.Lock()
        self.next_slot = 0.0

    def _wait_turn(self) -> None:
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + 1.0 / self.config.requests_per_second
        time.sleep(max(0.0, slot - now))

    def ask(self, prompt: str) -> str:
        import httpx

        body = {"model": self.config.teacher_model, "temperature": 0.0, "max_tokens": 1024,
                "messages": [{"role": "system", "content": TEACHER_SYSTEM},
                             {"role": "user", "content": prompt}]}
        delay = 1.0
        for attempt in range(self.config.max_retries + 1):
            self._wait_turn()
            try:
                r = self.client.post("/chat/completions", json=body)
                if r.status_code == 200:
                    data = r.json()
                    if "error" in data:
                        raise RuntimeError(f"teacher error: {data['error']}")
                    return data["choices"][0]["message"]["content"] or ""
                if r.status_code not in (408, 429) and r.status_code < 500:
                    raise RuntimeError(f"teacher answered HTTP {r.status_code}: {r.text[:200]}")
            except (httpx.TransportError, json.JSONDecodeError):
                if attempt == self.config.max_retries:
                    raise
            time.sleep(delay)
            delay *= 2
        raise RuntimeError(f"teacher failed after {self.config.max_retries + 1} attempts")

    def rows(self, task: dict, episode: dict, steps: list[dict]) -> list[dict]:
        tutorial, plans = parse_teacher_answer(self.ask(teacher_prompt(task, steps)), len(steps))
        annotator = self.config.annotator
        out = []
        for s in steps:
            if s.get("reasoning"):
                continue
            plan = plans.get(s["t"])
            text = None if plan is None else (f"{tutorial} {plan}".strip() if s["t"] == 0
                                              else plan)
            out.append(_row(s, episode, text, annotator))
        return out
