"""train-agent's curriculum: the sampler wired to the dream env, and its part of the run report.

In a dream env the experience model that simulates the episodes also writes the task variations
(`em_candidate_generator(*env.backend_and_tokenizer())`: the same weights in memory) and knows
each task's initial state (`env.start_states`). A real env cannot start a generated task, so there
the curriculum is off (one line on stderr, `curriculum/enabled = 0` in the metrics) and the batch
is uniform, as with `--no-curriculum`; the variance metrics are measured either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

OFF_REAL_ENV = "off: real env (generated tasks need the dream env to start them)"
OFF_ABLATION = "off: --no-curriculum"


def curriculum_status(config, dream: bool) -> str:
    if not dream:
        return OFF_REAL_ENV
    return "on" if config.curriculum else OFF_ABLATION


def make_sampler(config, env, pool, dream: bool):
    """The trainer's sampler for this run (a CurriculumSampler, on or off)."""
    from dreamgym_cli.curriculum.sampler import CurriculumSampler

    status = curriculum_status(config, dream)
    if status == OFF_REAL_ENV and config.curriculum:
        from rich.console import Console

        Console(stderr=True).print(f"curriculum {status}", highlight=False, markup=False)
    enabled = status == "on"
    generate = states = None
    if enabled:
        from dreamgym_cli.curriculum.variation import em_candidate_generator

        generate = em_candidate_generator(*env.backend_and_tokenizer())
        states = env.start_states
    return CurriculumSampler(pool, config.curriculum_settings(enabled), generate=generate,
                             initial_states=states)


def curriculum_report(sampler, out_dir: Path, status: str) -> tuple[dict[str, Any], dict]:
    """(manifest metrics, manifest extra); writes `generated_tasks.jsonl` (a task file) when the
    run generated any task."""
    from dreamgym_cli.trajectories import write_tasks

    made = sampler.generated_tasks()
    if made:
        write_tasks(out_dir / "generated_tasks.jsonl", made)
    metrics = {"curriculum": status, "curriculum/generated_in_run": len(made)}
    extra = {"curriculum": {"status": status, "generated_tasks":
                            "generated_tasks.jsonl" if made else None,
                            "examples": sampler.examples()}}
    return metrics, extra
