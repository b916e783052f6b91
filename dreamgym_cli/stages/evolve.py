"""`dreamgym tasks evolve`: grow a task pool with harder variations written by the experience model.

    dreamgym tasks evolve --em EM --rollouts S --pool T.parquet --out T2.parquet

`--rollouts` is a replay store (or a trajectory file) holding episodes of the pool's tasks. Per
task, V = mean((r_i − r̄)²) over its episodes' outcomes (DESIGN §8), the outcome being

    --outcome return   the episode's return (default, as `train-agent --outcome`); an episode
                       whose return is unknown counts its success as 1/0, or is skipped when that
                       is unknown too
    --outcome success  1 for a success, 0 otherwise (an episode cut before it ended is a failure)

The seeds are the top-m tasks with V > 0; the experience model writes `n` candidates for each,
validated and selected by `curriculum.variation` (its module doc lists the checks). A seed starts
where the dream env would start it (`envs.dream.resolve_start_state`): its own real t=0 state in
the rollouts, else its parent's, else its spec's `initial_state`. The output
task file is the pool followed by the selected variations (lineage-tagged); its manifest holds
the metrics (pool size before/after, fraction generated, mean V, share of zero-variance tasks,
rejected counts by reason) and examples of generated tasks with their parents. When no task has
V > 0 the output is the unchanged pool and the result says why.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dreamgym_cli.config import option, require_paths, to_dict
from dreamgym_cli.errors import InputError

OUTCOMES = ("return", "success")
SOURCES = ("all", "real", "synthetic")


@dataclasses.dataclass(frozen=True)
class EvolveConfig:
    em: Path = option(None, help="Experience-model directory (from train-em): writes the tasks.")
    rollouts: Path = option(None, help="Replay store or trajectory file with episodes of the "
                            "pool's tasks (their reward variance picks the seeds).")
    pool: Path = option(None, help="Task file to evolve.")
    out: Path = option(None, help="Task file to write: the pool plus the new variations.")
    seeds_per_round: int = option(4, help="Seed tasks (top-m by reward variance, V > 0).")
    candidates: int = option(4, help="Candidate variations sampled per seed task.")
    outcome: str = option("return", help="Episode outcome V is computed over: return or success.")
    source: str = option("all", help="Episodes to use: all, real or synthetic.")
    temperature: float = option(0.7, help="Sampling temperature of the candidates.")
    max_new_tokens: int = option(256, help="Longest candidate in tokens.")
    seed: int = option(0, help="Seed for sampling the candidates.")
    force: bool = option(False, help="Redo even if the output is up to date.")

    def __post_init__(self):
        require_paths(self, "em", "rollouts", "pool", "out")
        checks = [(self.seeds_per_round >= 1, "seeds_per_round", "an integer >= 1"),
                  (self.candidates >= 1, "candidates", "an integer >= 1"),
                  (self.outcome in OUTCOMES, "outcome", " or ".join(OUTCOMES)),
                  (self.source in SOURCES, "source", ", ".join(SOURCES)),
                  (self.temperature >= 0, "temperature", "a number >= 0"),
                  (self.max_new_tokens >= 1, "max_new_tokens", "an integer >= 1")]
        for ok, field, expected in checks:
            if not ok:
                raise InputError(f"expected {expected}, got {getattr(self, field)!r}",
                                 field=field)


def episode_outcome(episode: dict, outcome: str) -> float | None:
    """The reward V is computed over (see the module doc); None when it is unknown."""
    success = episode.get("success")
    if outcome == "success":
        return 1.0 if success else 0.0
    if episode.get("return") is not None:
        return float(episode["return"])
    return None if success is None else float(bool(success))


def read_rollouts(path: Path, task_ids: set[str], outcome: str, source: str
                  ) -> tuple[list[str], list[float], dict[str, tuple[str, tuple[str, ...]]], int]:
    """(task ids, outcomes) of the episodes of pool tasks, initial states, episodes ignored."""
    from dreamgym_cli.envs.dream import real_start_states

    if path.is_dir():
        from dreamgym_cli.store import ReplayStore

        store = ReplayStore.open(path)
        where = "" if source == "all" else f"WHERE source = '{source}'"
        episodes = store.sql(f'SELECT task_id, "return", success FROM episodes {where}').to_pylist()
        states = real_start_states(store)
    else:
        episodes, states = _read_trajectory_file(path, source)
    ids, rewards, ignored = [], [], 0
    for e in episodes:
        value = episode_outcome(e, outcome)
        if e["task_id"] not in task_ids or value is None:
            ignored += 1
            continue
        ids.append(e["task_id"])
        rewards.append(value)
    return ids, rewards, states, ignored


def _read_trajectory_file(path: Path, source: str):
    from dreamgym_cli.envs.dream import start_state
    from dreamgym_cli.trajectories import read_episodes

    episodes, states = [], {}
    for _, episode, steps in read_episodes(path):
        if source != "all" and episode["source"] != source:
            continue
        episodes.append(episode)
        first = steps[0] if steps and steps[0]["t"] == 0 else None
        # as `real_start_states` reads a store: real t=0 states only (the first one wins)
        if first is not None and episode["source"] == "real":
            states.setdefault(episode["task_id"], start_state(first["state"]))
    return episodes, states


def run(config: EvolveConfig, progress=None, *, generate=None, embed=None) -> dict[str, Any]:
    """Evolve the pool; `generate`/`embed` replace the EM's sampler and the embedder (tests)."""
    from dreamgym_cli.artifacts import ArtifactRun
    from dreamgym_cli.experience.examples import EM_SETTINGS_FILE
    from dreamgym_cli.trajectories import read_tasks

    if not (config.em / EM_SETTINGS_FILE).is_file():
        raise InputError(f"not an experience-model directory (no {EM_SETTINGS_FILE}); make one "
                         "with `dreamgym train-em`", file=config.em)
    pool = read_tasks(config.pool)
    if not config.rollouts.exists():
        raise InputError("no such replay store or trajectory file", file=config.rollouts)
    with ArtifactRun("tasks-evolve", config.out, to_dict(config), kind="file",
                     inputs={"em": config.em, "rollouts": config.rollouts, "pool": config.pool},
                     force=config.force) as run_:
        if run_.up_to_date:
            return {"out": str(config.out), "skipped": True, **_summary(run_.previous)}
        result = _evolve(config, pool, progress, generate, embed)
        from dreamgym_cli.trajectories import write_tasks

        write_tasks(run_.tmp, list(pool) + result.new_tasks)
        manifest = run_.commit(metrics=result.metrics, extra={
            "seeds": result.seed_ids, "rejected_counts": result.rejected_counts,
            "examples": result.examples, "reason": result.reason})
    return {"out": str(config.out), "skipped": False, **_summary(manifest)}


def _evolve(config: EvolveConfig, pool, progress, generate, embed):
    from dreamgym_cli.curriculum.variance import reward_variance
    from dreamgym_cli.curriculum.variation import evolve_pool, load_em_generator

    steps = 3
    if progress:
        progress(0, steps, {})
    ids, rewards, states, ignored = read_rollouts(config.rollouts, {t.task_id for t in pool},
                                                  config.outcome, config.source)
    variances = reward_variance(rewards, ids) if ids else {}
    if progress:
        progress(1, steps, {})

    def lazy_generate(seeds, n, seed):  # the EM is loaded only when there are seeds
        sampler = generate or load_em_generator(config.em, temperature=config.temperature,
                                                max_new_tokens=config.max_new_tokens)
        texts = sampler(seeds, n, seed)
        if progress:
            progress(2, steps, {})
        return texts

    result = evolve_pool(None, pool, variances, seeds_per_round=config.seeds_per_round,
                         candidates=config.candidates, initial_states=states, seed=config.seed,
                         generate=lazy_generate, embed=embed)
    result.metrics.update({"curriculum/episodes": len(ids),
                           "curriculum/episodes_ignored": ignored,
                           "curriculum/outcome": config.outcome})
    if progress:
        progress(steps, steps, {})
    return result


def _summary(manifest: dict) -> dict[str, Any]:
    return {**manifest["metrics"], "seeds": manifest.get("seeds", []),
            "rejected_counts": manifest.get("rejected_counts", {}),
            "examples": manifest.get("examples", []), "reason": manifest.get("reason")}


def render(result: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    from dreamgym_cli.ui import stdout as out

    table = Table(title=f"tasks evolve ({result['out']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.items():
        if k.startswith("curriculum/") and not k.startswith("curriculum/rejected/"):
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    rejected = ", ".join(f"{r} {n}" for r, n in result["rejected_counts"].items() if n)
    table.add_row("rejected", rejected or "none")
    out.print(table)
    if result.get("reason"):
        out.print(f"[yellow]no new tasks:[/] {result['reason']}", highlight=False)
    for i, ex in enumerate(result.get("examples", []), start=1):
        out.print(f"\n[bold]Example {i}[/] ({escape(ex['task_id'])})", highlight=False)
        out.print(f"  parent: {ex['parent']}", highlight=False, markup=False)
        out.print(f"  new:    {ex['instruction']}", highlight=False, markup=False)
