"""Progress bars and consoles: progress goes to stderr so that `--json` stdout stays clean."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

stdout = Console()  # results for people (the CLI's `out`)
stderr = Console(stderr=True)


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=stderr, transient=False)


@contextlib.contextmanager
def step_progress(description: str, total: int | None = None,
                  fmt: Callable[[dict], str] | None = None
                  ) -> Iterator[Callable[[int, int, dict], None]]:
    """A callback `update(done, total, metrics)` that drives one progress bar."""
    with progress_bar() as bar:
        task = bar.add_task(description, total=total, info="")

        def update(done: int, total_now: int, metrics: dict | None = None) -> None:
            info = fmt(metrics) if (fmt and metrics) else ""
            bar.update(task, completed=done, total=total_now, info=info)

        yield update


def loss_info(metrics: dict) -> str:
    parts = []
    for key in ("train/loss", "eval/loss"):
        if metrics.get(key) is not None:
            parts.append(f"{key.split('/')[0]} {metrics[key]:.3f}")
    return "  ".join(parts)


@contextlib.contextmanager
def counter_progress(description: str, total: int | None = None) -> Iterator[Callable[[], None]]:
    """A transient progress bar on stderr for counted work; yields `advance()`."""
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=stderr, transient=True) as progress:
        bar = progress.add_task(description, total=total)
        yield lambda: progress.advance(bar)
