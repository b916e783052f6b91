"""A task file as the policy stages read it (`train-agent`, `rollout`, `eval`)."""

from __future__ import annotations

from pathlib import Path

from dreamgym_cli.errors import InputError


def read_task_pool(path: Path):
    """The tasks of a task file; an empty file is an InputError naming it."""
    from dreamgym_cli.trajectories import read_tasks

    tasks = read_tasks(path)
    if not tasks:
        raise InputError("the task file has no tasks", file=path)
    return tasks


def tasks_env(tasks, file: Path) -> str:
    """The one env the tasks name; tasks of several envs need an explicit --env."""
    envs = sorted({t.env for t in tasks})
    if len(envs) != 1:
        raise InputError(f"the tasks name {len(envs)} envs ({', '.join(envs)}); pass --env",
                         file=file, field="env")
    return envs[0]
