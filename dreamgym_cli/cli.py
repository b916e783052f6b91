"""The `dreamgym` command line: thin typer commands.

Each command parses options, builds its stage's frozen config, calls the stage's `run(config)` and
renders the result with rich. No logic lives here. Stage modules are imported inside the commands
so that `dreamgym --help` stays fast.

Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 failure. `--json` prints
exactly one JSON object on stdout; progress and tables go to stderr then.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from dreamgym_cli.errors import InputError

out = Console()  # results for people
err = Console(stderr=True)  # progress, warnings, errors


class _App(typer.Typer):
    """typer.Typer whose call turns InputError into exit 2 and other failures into exit 1."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        sys.exit(main(kwargs.get("args", args[0] if args else None)))


app = _App(
    name="dreamgym",
    help="Train LLM agents with RL on synthetic experience (DreamGym). "
    "Stages are chained by artifacts with manifests; see README.md.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
store_app = typer.Typer(help="Inspect and query a replay store.", no_args_is_help=True)
tasks_app = typer.Typer(help="Make task files, and evolve them (curriculum).", no_args_is_help=True)
app.add_typer(store_app, name="store")
app.add_typer(tasks_app, name="tasks")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI in this process and return its exit code (what tests call)."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="dreamgym", standalone_mode=False)
    except InputError as e:
        err.print(f"[bold red]error:[/] {e.one_line()}", highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err.print("aborted")
        return 130
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as e:  # click usage errors carry their own exit code (2)
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show(file=sys.stderr)
            return e.exit_code
        if isinstance(e, click.exceptions.Exit):
            return e.exit_code
        if os.environ.get("DREAMGYM_DEBUG"):
            raise
        err.print(f"[bold red]failed:[/] {type(e).__name__}: {e}", highlight=False)
        err.print("(set DREAMGYM_DEBUG=1 for the traceback)")
        return 1
    return 0


def emit(result: dict[str, Any], as_json: bool, render=None) -> None:
    """One JSON object on stdout with --json; otherwise `render(result)` for people."""
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        sys.stdout.flush()
    elif render is not None:
        render(result)
    else:
        out.print_json(json.dumps(result, default=str))


def _help(cls_path: str, field: str) -> str:
    """Help text from a stage config's field doc, without importing heavy modules."""
    import importlib
    import dataclasses

    module, cls = cls_path.rsplit(".", 1)
    try:
        klass = getattr(importlib.import_module(module), cls)
    except Exception:  # pragma: no cover - help text must never break the CLI
        return ""
    for f in dataclasses.fields(klass):
        if f.name == field:
            return f.metadata.get("help", "")
    return ""


CONFIG_OPT = typer.Option(None, "--config", help="YAML/TOML file of options; flags override it.")
FORCE_OPT = typer.Option(False, "--force", help="Redo the stage even if its output is up to date.")
JSON_OPT = typer.Option(False, "--json", help="Print one JSON object on stdout, nothing else.")


# ----------------------------------------------------------------------------------------------
# tasks make


@tasks_app.command("make")
def tasks_make(
    env: str = typer.Option(..., help="Environment name (textworld, miniwob, ...)."),
    out_path: Path = typer.Option(..., "--out", help="Task file to write (.parquet or .jsonl)."),
    seeds: str = typer.Option("1-10", help="Seeds, e.g. '1-40' or '1,2,5-9'."),
    split: str = typer.Option("train", help="Split recorded on every task: train, valid or test."),
    challenge: Optional[str] = typer.Option(None, help="TextWorld challenge: tw-simple, "
                                            "tw-coin_collector, tw-treasure_hunter, tw-cooking."),
    settings: Optional[str] = typer.Option(None, help="Challenge settings, e.g. "
                                           "'rewards=dense,goal=detailed' or 'level=5'."),
    suite: Optional[str] = typer.Option(None, help="Comma-separated task names (miniwob, ...)."),
    max_steps: Optional[int] = typer.Option(None, help="Step limit recorded in each task spec."),
    data_dir: Optional[Path] = typer.Option(None, help="Where generated games are cached "
                                            "(default: $DREAMGYM_HOME/games)."),
    config: Optional[Path] = CONFIG_OPT,
    force: bool = FORCE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Generate tasks (TextWorld games are generated offline and cached) into a task file."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import tasks as stage

    c = cfg.build(stage.MakeConfig, config, env=env, out=out_path, seeds=seeds, split=split,
                  challenge=challenge, settings=settings, suite=suite, max_steps=max_steps,
                  data_dir=data_dir, force=force)
    emit(stage.make(c), as_json, stage.render_make)


# ----------------------------------------------------------------------------------------------
# collect


@app.command("collect")
def collect(
    tasks: Path = typer.Option(..., help="Task file from `dreamgym tasks make`."),
    out_path: Path = typer.Option(..., "--out", help="Trajectory file to write (.jsonl or .parquet)."),
    policy: str = typer.Option("expert", help="expert, random, mixed, or a policy directory."),
    episodes_per_task: int = typer.Option(1, help="Episodes to run on each task."),
    epsilon: Optional[float] = typer.Option(None, help="mixed: probability of a random action."),
    max_steps: Optional[int] = typer.Option(None, help="Step limit (default: the task's own)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: CPU count)."),
    seed: Optional[int] = typer.Option(None, help="Seed for the random choices of the policy."),
    config: Optional[Path] = CONFIG_OPT,
    force: bool = FORCE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Run a policy in a real environment and write canonical trajectories."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import collect as stage

    c = cfg.build(stage.CollectConfig, config, tasks=tasks, out=out_path, policy=policy,
                  episodes_per_task=episodes_per_task, epsilon=epsilon, max_steps=max_steps,
                  workers=workers, seed=seed, force=force)
    emit(stage.run(c), as_json, stage.render)


# ----------------------------------------------------------------------------------------------
# ingest


@app.command("ingest")
def ingest(
    files: list[Path] = typer.Argument(..., help="Trajectory files: canonical JSONL/Parquet, HF "
                                       "datasets (save_to_disk dirs, parquet/json files), "
                                       "AgentGym conversations JSON."),
    store: Path = typer.Option(..., "--store", help="Replay store directory (created if missing)."),
    fmt: str = typer.Option("auto", "--format", help="auto, canonical, hf, agentgym."),
    env: Optional[str] = typer.Option(None, help="Env name for records that do not carry one "
                                      "(AgentGym files: taken from item_id when absent)."),
    source: Optional[str] = typer.Option(None, help="Override source (real/synthetic) for "
                                         "records that do not carry one."),
    embed: bool = typer.Option(False, "--embed/--no-embed", help="Embed the new transitions "
                               "for retrieval now (otherwise on first retrieval)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Read trajectory files into a replay store (validated, deduplicated, atomic)."""
    from dreamgym_cli.stages import ingest as stage

    c = stage.IngestConfig(files=tuple(files), store=store, format=fmt, env=env, source=source,
                           embed=embed)
    emit(stage.run(c), as_json, stage.render)


# ----------------------------------------------------------------------------------------------
# store info / store sql


@store_app.command("info")
def store_info(
    path: Path = typer.Argument(..., help="Replay store directory."),
    as_json: bool = JSON_OPT,
) -> None:
    """Counts by env/source/split, success rate and mean episode length."""
    from dreamgym_cli.store import ReplayStore, render_info

    info = ReplayStore.open(path).info()
    emit(info, as_json, render_info)


@store_app.command("sql")
def store_sql(
    path: Path = typer.Argument(..., help="Replay store directory."),
    query: str = typer.Argument(..., help="SQL over the views tasks, episodes, steps."),
    as_json: bool = JSON_OPT,
    limit: int = typer.Option(50, help="Rows to print (the JSON output holds all rows)."),
) -> None:
    """Run a read-only SQL query (DuckDB) over the store's tables."""
    from dreamgym_cli.store import ReplayStore, render_table

    table = ReplayStore.open(path).sql(query)
    if as_json:
        emit({"columns": table.column_names, "rows": table.to_pylist()}, True)
    else:
        render_table(table, limit=limit)


if __name__ == "__main__":  # pragma: no cover
    app()
