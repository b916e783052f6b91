"""Task variation by the experience model (DESIGN §8): harder variations of high-variance tasks.

The experience model (same weights, a task-generation prompt, `build_task_prompt`) samples `n`
candidate variations of each seed task, each written as `<task>…</task>`. A candidate is kept
only if it passes every check, in this order (the first failure is its rejection reason):

    unparseable        no non-empty `<task>` body
    too_short          fewer than `min_words` words
    too_long           more than 2·(parent's words) + 30 words, or more than `max_chars`
    copy_of_parent     normalised text equal to the parent's, a cut-down piece of it, or no new
                       content word while not longer than the parent (it cannot be harder)
    duplicate_text     normalised text equal to a pool task, an earlier candidate of this seed
                       or a variation selected this round
    out_of_vocabulary  envs with a closed world (TextWorld): more than `max_oov_share` of the
                       candidate's content words (≥ 3 letters, not stop words) appear nowhere in
                       the parent's instruction, its initial state (objects, exits, the admissible
                       actions listed there or stored with it) or the game's command words
    near_duplicate     embedding cosine (all-MiniLM-L6-v2, `store.embed`) ≥ `family_cosine`
                       (0.995) with a task of the seed's own family — the parent, its ancestors,
                       their other variations — or ≥ `near_duplicate_cosine` (0.95) with any
                       other task. Two thresholds because a real harder variation of a long
                       instruction (the parent plus one more step) measures ~0.99 with its parent,
                       while different tw-simple games measure 0.72–0.77 with each other.

Selection (one per seed, a documented heuristic instead of a selection prompt): the valid
candidate with the highest `novelty − oov_share`, novelty = 1 − cosine to the parent (the most
different variation that stays in the parent's world); ties go to the earlier candidate.

Lineage: `origin="generated"`, `parent_id`, `generation = parent.generation + 1`, the parent's
split, the parent's spec plus `initial_state` (the parent's initial state, when known) so that
the dream env starts a generated task — of any generation — where its family started. The id is
`<parent id>/gen-<sha256 of the normalised text, 10 hex>`.

Learning the format: `train-em` adds `task_generation_pairs` to the experience model's data —
for each training task, the task prompt with its real initial state, answered by
`<task>instruction</task>` of another real task that starts from the same state (`--task-examples`
per task). A model trained on transitions only never writes `<task>`, and every candidate is
`unparseable`.

`evolve_pool` is what the trainer calls every `--curriculum-every` iterations; the candidate
generator and the embedder are parameters (pass another function to swap them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dreamgym_cli.curriculum.variance import select_seed_tasks, zero_variance_share
from dreamgym_cli.envs.dream import StartState, real_start_states, resolve_start_state
from dreamgym_cli.experience.tags import TASK, close_tag, open_tag, read_tags
from dreamgym_cli.schema import EpisodeRecord, Task

REJECTION_REASONS = ("unparseable", "too_short", "too_long", "copy_of_parent", "duplicate_text",
                     "out_of_vocabulary", "near_duplicate")
VOCABULARY_ENVS = ("textworld",)  # envs whose tasks may only name things of their world
STATE_CHARS = 1500  # initial state shown in the prompt (TextWorld's Actions line comes last)

TASK_PREAMBLE = (
    "You write tasks for a text environment. Below is a task that the agent sometimes solves "
    "and sometimes fails, and the state it starts from. Write one new task that is a harder "
    "variation of it: the same world, the same rooms, objects and actions, but a goal that needs "
    "more or different steps. Write only the task, inside its tag."
)

# Words any instruction may use without naming something of the world.
STOPWORDS = frozenset("""
the and then that this with from into onto for you your are was were been being have has had
not but can could should would will shall may might must its it's his her their them they there
here where when what which who whom how all any each every both some more most other such only
own same than too very just also once after before again first next last finally now make sure
sure try attempt step get got got good done okay thanks well while until inside within out off
over under above below upon back still let lets like really please want need stop win winner
whole out about across along around between through without thing things something nothing
""".split())
# TextWorld's command grammar: verbs and directions are never out of the world.
COMMAND_WORDS = frozenset("""
go take drop put insert open close lock unlock eat drink examine look inventory pick pickup
place rest recover retrieve grab move head travel walk enter find bring carry give use cook
slice dice chop prepare meal north south east west up down
""".split())

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


@dataclasses.dataclass(frozen=True)
class VariationRules:
    """The validation thresholds (see the module doc for what each check does)."""

    min_words: int = 4
    max_chars: int = 2000
    max_oov_share: float = 0.2
    near_duplicate_cosine: float = 0.95
    family_cosine: float = 0.995


@dataclasses.dataclass(frozen=True)
class SeedContext:
    """A seed task with what the prompt and the vocabulary check know about its world."""

    task: Task
    variance: float
    initial_state: str | None = None
    admissible: tuple[str, ...] = ()


@dataclasses.dataclass
class Candidate:
    parent_id: str
    index: int  # which of the seed's n samples
    raw: str
    instruction: str | None = None
    reason: str | None = None  # None: valid
    oov_share: float = 0.0
    novelty: float | None = None  # 1 − cosine to the parent
    selected: bool = False

    @property
    def valid(self) -> bool:
        return self.reason is None


@dataclasses.dataclass
class EvolveResult:
    new_tasks: list[Task]
    seed_ids: list[str]
    candidates: list[Candidate]
    rejected_counts: dict[str, int]
    examples: list[dict[str, Any]]
    metrics: dict[str, Any]
    reason: str | None = None  # why nothing was generated, when nothing was


# A generator: (seeds, n, seed) -> per seed, n raw completions.
CandidateGenerator = Callable[[Sequence[SeedContext], int, int], list[list[str]]]
Embed = Callable[[Sequence[str]], np.ndarray]


# ----------------------------------------------------------------------------------------------
# Text: prompt, parsing, normalisation, vocabulary


def build_task_prompt(seed: SeedContext) -> str:
    state = (seed.initial_state or "").strip()
    if len(state) > STATE_CHARS:
        state = state[:STATE_CHARS - 1].rstrip() + "…"
    parts = [TASK_PREAMBLE, f"## Task\n{seed.task.instruction.strip()}"]
    if state:
        parts.append(f"## Initial state\n{state}")
    parts.append(f"## New task\nWrite it as {open_tag(TASK)}…{close_tag(TASK)}.")
    return "\n\n".join(parts)


def task_generation_pairs(episodes: Sequence[EpisodeRecord], per_task: int
                          ) -> list[tuple[str, str]]:
    """(task prompt, `<task>sibling instruction</task>`) pairs from real episodes (module doc).

    Siblings: other tasks of the same env whose t=0 state is the same text. Each task gets its
    next `per_task` siblings in task-id order (wrapping around); deterministic.
    """
    if per_task <= 0:
        return []
    first: dict[str, tuple[Task, str]] = {}
    for task_row, _, steps in episodes:
        if steps and task_row["task_id"] not in first:
            first[task_row["task_id"]] = (Task.from_row(task_row), steps[0]["state"])
    by_start: dict[tuple[str, str], list[Task]] = {}
    for task, state in first.values():
        by_start.setdefault((task.env, state), []).append(task)
    pairs = []
    for (_, state), tasks in by_start.items():
        tasks.sort(key=lambda t: t.task_id)
        for i, task in enumerate(tasks):
            siblings = [tasks[(i + j) % len(tasks)] for j in range(1, len(tasks))]
            siblings = [t for t in siblings if normalize_text(t.instruction)
                        != normalize_text(task.instruction)][:per_task]
            prompt = build_task_prompt(SeedContext(task, 0.0, state))
            pairs += [(prompt, f"{open_tag(TASK)}{t.instruction.strip()}{close_tag(TASK)}")
                      for t in siblings]
    return pairs


def parse_candidate(text: str) -> str | None:
    """The `<task>` body with whitespace collapsed; None when there is none or it is empty."""
    body = read_tags(text or "")[0].get(TASK)
    body = " ".join((body or "").split())
    return body or None


def normalize_text(text: str) -> str:
    """Lower-case words joined by single spaces (punctuation and spacing do not make a task new)."""
    return " ".join(_WORD.findall(text.lower()))


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in STOPWORDS]


def world_vocabulary(seed: SeedContext) -> set[str]:
    """Words of the parent's instruction, initial state and admissible actions, and commands."""
    texts = [seed.task.instruction, seed.initial_state or "", *seed.admissible]
    return {w for t in texts for w in _WORD.findall(t.lower())} | COMMAND_WORDS


def oov_share(text: str, vocabulary: set[str]) -> float:
    words = content_words(text)
    return sum(w not in vocabulary for w in words) / len(words) if words else 0.0


def generated_task_id(parent_id: str, instruction: str) -> str:
    digest = hashlib.sha256(normalize_text(instruction).encode("utf-8")).hexdigest()[:10]
    return f"{parent_id}/gen-{digest}"


def make_generated_task(parent: Task, instruction: str, initial_state: str | None) -> Task:
    """The variation as a task of the pool, with its lineage and its family's start state."""
    spec = dict(parent.spec)
    if initial_state:
        spec["initial_state"] = initial_state
    return Task(task_id=generated_task_id(parent.task_id, instruction), env=parent.env,
                instruction=instruction, spec=spec, split=parent.split, origin="generated",
                parent_id=parent.task_id, generation=parent.generation + 1)


# ----------------------------------------------------------------------------------------------
# Validation and selection


def check_text(candidate: Candidate, seed: SeedContext, taken: set[str],
               rules: VariationRules) -> Candidate:
    """The checks that need no embedding; sets `instruction`, `reason`, `oov_share`."""
    candidate.instruction = parse_candidate(candidate.raw)
    if candidate.instruction is None:
        candidate.reason = "unparseable"
        return candidate
    text, parent = candidate.instruction, seed.task.instruction
    norm, parent_norm = normalize_text(text), normalize_text(parent)
    words, parent_words = len(norm.split()), len(parent_norm.split())
    if words < rules.min_words:
        candidate.reason = "too_short"
    elif words > 2 * parent_words + 30 or len(text) > rules.max_chars:
        candidate.reason = "too_long"
    elif f" {norm} " in f" {parent_norm} " or (
            set(content_words(text)) <= set(content_words(parent)) and words <= parent_words):
        candidate.reason = "copy_of_parent"
    elif norm in taken:
        candidate.reason = "duplicate_text"
    else:
        if seed.task.env in VOCABULARY_ENVS:
            candidate.oov_share = oov_share(text, world_vocabulary(seed))
        if candidate.oov_share > rules.max_oov_share:
            candidate.reason = "out_of_vocabulary"
    return candidate


def select_variation(candidates: Sequence[Candidate]) -> Candidate | None:
    """The valid candidate with the largest novelty − oov_share; the earliest on ties."""
    best = None
    for c in candidates:
        if not c.valid:
            continue
        score = (c.novelty or 0.0) - c.oov_share
        if best is None or score > best[0]:
            best = (score, c)
    return None if best is None else best[1]


def family_of(pool: Sequence[Task]) -> dict[str, str]:
    """{task_id: root ancestor id} following parent_id within the pool (cycles stop)."""
    parents = {t.task_id: t.parent_id for t in pool}
    roots = {}
    for task_id in parents:
        root, seen = task_id, {task_id}
        while parents.get(root) and parents[root] in parents and parents[root] not in seen:
            root = parents[root]
            seen.add(root)
        roots[task_id] = root
    return roots


class _Known:
    """Texts and unit embeddings of the tasks a candidate must not duplicate (grows per round).

    The pool is embedded on first use: a round whose candidates all fail the text checks never
    loads the embedder.
    """

    def __init__(self, pool: Sequence[Task], embed: Embed):
        self.embed = embed
        self.pool = list(pool)
        self.ids = [t.task_id for t in pool]
        self.texts = {normalize_text(t.instruction) for t in pool}
        self.roots = family_of(pool)
        self._vectors: np.ndarray | None = None
        self._added: list[np.ndarray] = []

    @property
    def vectors(self) -> np.ndarray:
        """[len(ids), d] unit vectors, in the order of `ids`."""
        if self._vectors is None:
            self._vectors = np.asarray(self.embed([t.instruction for t in self.pool]))
        if self._added:
            rows = [self._vectors, *(v[None] for v in self._added)] if len(self.pool) else \
                [v[None] for v in self._added]
            self._vectors, self._added = np.vstack(rows), []
        return self._vectors

    def add(self, task: Task, vector: np.ndarray) -> None:
        self.ids.append(task.task_id)
        self.texts.add(normalize_text(task.instruction))
        self.roots[task.task_id] = self.roots.get(task.parent_id, task.parent_id)
        self._added.append(np.asarray(vector))


def check_embeddings(candidates: Sequence[Candidate], seed: SeedContext, known: _Known,
                     rules: VariationRules) -> dict[int, np.ndarray]:
    """Near-duplicate check and novelty of the still-valid candidates; {id(candidate): vector}."""
    alive = [c for c in candidates if c.valid]
    if not alive:
        return {}
    vectors = known.embed([c.instruction for c in alive] + [seed.task.instruction])
    cand, parent = vectors[:-1], vectors[-1]
    root = known.roots.get(seed.task.task_id, seed.task.task_id)
    same_family = np.array([known.roots.get(i, i) == root for i in known.ids], dtype=bool)
    sims = cand @ known.vectors.T  # [k, N]
    limits = np.where(same_family, rules.family_cosine, rules.near_duplicate_cosine)  # [N]
    for c, row, vec in zip(alive, sims, cand):
        c.novelty = float(1.0 - vec @ parent)
        if (row >= limits).any():
            c.reason = "near_duplicate"
    return {id(c): v for c, v in zip(alive, cand)}


# ----------------------------------------------------------------------------------------------
# The experience model as a candidate generator


def em_candidate_generator(backend, tokenizer, *, temperature: float = 0.7,
                           max_new_tokens: int = 256) -> CandidateGenerator:
    """Sample n `<task>` completions per seed from a generation backend over the EM's weights.

    The trainer passes the dream env's own backend (`env.backend`, `env.tokenizer`): the same
    weights in memory, no second copy.
    """
    from dreamgym_cli.llm.generate import GenerationParams
    from dreamgym_cli.llm.sft import encode_prompt

    def generate(seeds: Sequence[SeedContext], n: int, seed: int) -> list[list[str]]:
        if not seeds:
            return []
        prompts = [encode_prompt(tokenizer, build_task_prompt(s)) for s in seeds]
        params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature,
                                  stop=(close_tag(TASK),), seed=seed, n=n)
        return [[c.text for c in row] for row in backend.generate(prompts, params)]

    return generate


def load_em_generator(em: str | Path | tuple, **options) -> CandidateGenerator:
    """A generator over an EM directory (`llm.models.load_model`) or a (model, tokenizer) pair."""
    from dreamgym_cli.llm.generate import open_backend
    from dreamgym_cli.llm.models import load_model

    model, tokenizer = em if isinstance(em, tuple) else load_model(Path(em))
    backend = open_backend("transformers", model=model, tokenizer=tokenizer)
    return em_candidate_generator(backend, tokenizer, **options)


def default_embed(texts: Sequence[str]) -> np.ndarray:
    """Unit vectors [n, 384] from the store's embedder (loaded once per process)."""
    from dreamgym_cli.store.embed import get_embedder

    return get_embedder().encode(list(texts))


# ----------------------------------------------------------------------------------------------
# Initial states


def seed_contexts(tasks: Sequence[Task], variances: Mapping[str, float],
                  known: Mapping[str, StartState]) -> list[SeedContext]:
    """Seeds with their initial state, resolved as the dream env resolves it
    (`envs.dream.resolve_start_state`: own real t=0 state, else the parent's, else the spec's).

    known: start states by task id (`envs.dream.real_start_states`, or the trainer's
    `env.start_states` of the seeds)."""
    out = []
    for task in tasks:
        state, admissible = resolve_start_state(task, known) or (None, ())
        out.append(SeedContext(task=task, variance=float(variances.get(task.task_id, 0.0)),
                               initial_state=state, admissible=tuple(admissible)))
    return out


# ----------------------------------------------------------------------------------------------
# One round


def evolve_pool(em: str | Path | tuple | None, pool: Sequence[Task],
                variances: Mapping[str, float], *, seeds_per_round: int = 4,
                candidates: int = 4, store=None,
                initial_states: Mapping[str, StartState] | None = None,
                seed: int = 0, rules: VariationRules = VariationRules(),
                generate: CandidateGenerator | None = None, embed: Embed | None = None,
                examples: int = 5) -> EvolveResult:
    """One curriculum round: variations of the top-`seeds_per_round` tasks with V > 0.

    em: an EM directory or (model, tokenizer); ignored when `generate` is given (the trainer
    passes `em_candidate_generator(env.backend, env.tokenizer)`). variances: {task_id: V} over
    the latest rollouts. Initial states come from `initial_states` or the `store`. Nothing is
    loaded when no task has V > 0. The pool itself is not changed: add `result.new_tasks`.
    """
    if seeds_per_round < 1 or candidates < 1:
        raise ValueError("seeds_per_round and candidates must be >= 1")
    by_id = {t.task_id: t for t in pool}
    seed_ids = select_seed_tasks({k: v for k, v in variances.items() if k in by_id},
                                 seeds_per_round)
    base = _round_metrics(pool, variances)
    if not seed_ids:
        reason = (f"no task of the pool has reward variance > 0 over its rollouts "
                  f"({len([k for k in variances if k in by_id])} tasks with rollouts)")
        zero = {r: 0 for r in REJECTION_REASONS}
        return EvolveResult([], [], [], zero, [], _final_metrics(base, pool, [], [], 0, zero),
                            reason)
    known_states = dict(initial_states or {})
    if store is not None and initial_states is None:
        known_states = real_start_states(store)
    seeds = seed_contexts([by_id[i] for i in seed_ids], variances, known_states)
    generate = generate or load_em_generator(em)
    raw = generate(seeds, candidates, seed)
    new_tasks, all_candidates = _validate_and_select(seeds, raw, pool, rules,
                                                     embed or default_embed)
    rejected = Counter(c.reason for c in all_candidates if c.reason)
    rejected_counts = {r: rejected.get(r, 0) for r in REJECTION_REASONS}
    shown = [{"parent_id": t.parent_id, "parent": by_id[t.parent_id].instruction,
              "task_id": t.task_id, "instruction": t.instruction, "generation": t.generation}
             for t in new_tasks[:examples]]
    metrics = _final_metrics(base, pool, new_tasks, all_candidates, len(seed_ids),
                             rejected_counts)
    reason = None if new_tasks else "no candidate passed validation"
    return EvolveResult(new_tasks, seed_ids, all_candidates, rejected_counts, shown, metrics,
                        reason)


def _validate_and_select(seeds: Sequence[SeedContext], raw: list[list[str]],
                         pool: Sequence[Task], rules: VariationRules, embed: Embed
                         ) -> tuple[list[Task], list[Candidate]]:
    """Per seed in order: text checks, embedding checks, then the selection joins `known`."""
    if len(raw) != len(seeds):
        raise ValueError(f"the generator returned {len(raw)} rows for {len(seeds)} seeds")
    known = _Known(pool, embed)
    new_tasks: list[Task] = []
    everything: list[Candidate] = []
    for seed, texts in zip(seeds, raw):
        taken = set(known.texts)
        batch = []
        for index, text in enumerate(texts):
            c = check_text(Candidate(seed.task.task_id, index, text), seed, taken, rules)
            if c.instruction and c.reason != "unparseable":
                taken.add(normalize_text(c.instruction))
            batch.append(c)
        vectors = check_embeddings(batch, seed, known, rules)
        chosen = select_variation(batch)
        if chosen is not None:
            chosen.selected = True
            task = make_generated_task(seed.task, chosen.instruction, seed.initial_state)
            known.add(task, vectors[id(chosen)])
            new_tasks.append(task)
        everything.extend(batch)
    return new_tasks, everything


def _round_metrics(pool: Sequence[Task], variances: Mapping[str, float]) -> dict[str, Any]:
    ids = {t.task_id for t in pool}
    groups = {k: v for k, v in variances.items() if k in ids}
    return {
        "curriculum/pool_size_before": len(pool),
        "curriculum/tasks_with_rollouts": len(groups),
        "curriculum/mean_variance": (sum(groups.values()) / len(groups)) if groups else 0.0,
        "curriculum/zero_variance_share": zero_variance_share(groups),
    }


def _final_metrics(base: dict[str, Any], pool: Sequence[Task], new_tasks: Sequence[Task],
                   candidates: Sequence[Candidate], n_seeds: int,
                   rejected: Mapping[str, int]) -> dict[str, Any]:
    after = len(pool) + len(new_tasks)
    generated = sum(t.origin == "generated" for t in pool) + len(new_tasks)
    return {**base,
            "curriculum/pool_size_after": after,
            "curriculum/generated_fraction": generated / after if after else 0.0,
            "curriculum/seeds": n_seeds,
            "curriculum/candidates": len(candidates),
            "curriculum/valid_candidates": sum(c.valid for c in candidates),
            "curriculum/added": len(new_tasks),
            **{f"curriculum/rejected/{r}": n for r, n in rejected.items()}}
