"""The `dreamgym` command line: thin typer commands.

Each command parses options, builds its stage's frozen config, calls the stage's `run(config)` and
renders the result with rich. No logic lives here. An option that sets a config field takes its
help from that field's doc (`_help`), so the text has one source; the stage modules that define the
configs are light (torch and models load inside `run`), and the rest is imported inside commands.

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
from rich.markup import escape  # messages quote data such as 'click[buy now]': not markup

from dreamgym_cli.errors import InputError

from dreamgym_cli.ui import stderr as err  # progress, warnings, errors
from dreamgym_cli.ui import stdout as out  # results for people


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
        err.print(f"[bold red]error:[/] {escape(e.one_line())}", highlight=False, soft_wrap=True)
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
        err.print(f"[bold red]failed:[/] {type(e).__name__}: {escape(str(e))}", highlight=False,
                  soft_wrap=True)
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
    """The doc of a stage config's field: the one help text of the option that sets it.

    A typo in `field` fails at import (and in tests/test_cli_help.py), not silently."""
    import importlib

    from dreamgym_cli.config import help_of

    module, cls = cls_path.rsplit(".", 1)
    try:
        klass = getattr(importlib.import_module(module), cls)
    except ImportError:  # pragma: no cover - a missing optional dependency must not break --help
        return ""
    return help_of(klass, field)


def _force(cls_path: str) -> Any:
    """The --force flag, with its stage's own wording."""
    return typer.Option(False, "--force", help=_help(cls_path, "force"))


CONFIG_OPT = typer.Option(None, "--config", help="YAML/TOML file of options; flags override it.")
JSON_OPT = typer.Option(False, "--json", help="Print one JSON object on stdout, nothing else.")


# ----------------------------------------------------------------------------------------------
# tasks make


_MAKE = "dreamgym_cli.stages.tasks.MakeConfig"


@tasks_app.command("make")
def tasks_make(
    env: str = typer.Option(..., help=_help(_MAKE, "env")),
    out_path: Path = typer.Option(..., "--out", help=_help(_MAKE, "out")),
    seeds: Optional[str] = typer.Option(None, help=_help(_MAKE, "seeds")),
    split: Optional[str] = typer.Option(None, help=_help(_MAKE, "split")),
    challenge: Optional[str] = typer.Option(None, help=_help(_MAKE, "challenge")),
    settings: Optional[str] = typer.Option(None, help=_help(_MAKE, "settings")),
    suite: Optional[str] = typer.Option(None, help=_help(_MAKE, "suite")),
    max_steps: Optional[int] = typer.Option(None, help=_help(_MAKE, "max_steps")),
    data_dir: Optional[Path] = typer.Option(None, help=_help(_MAKE, "data_dir")),
    config: Optional[Path] = CONFIG_OPT,
    force: bool = _force(_MAKE),
    as_json: bool = JSON_OPT,
) -> None:
    """Generate tasks (TextWorld games are generated offline and cached) into a task file."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import tasks as stage

    c = cfg.build(stage.MakeConfig, config, env=env, out=out_path, seeds=seeds, split=split,
                  challenge=challenge, settings=settings, suite=suite, max_steps=max_steps,
                  data_dir=data_dir, force=force or None)
    emit(stage.make(c), as_json, stage.render_make)


# ----------------------------------------------------------------------------------------------
# collect


_COLLECT = "dreamgym_cli.stages.collect.CollectConfig"


@app.command("collect")
def collect(
    tasks: Path = typer.Option(..., help=_help(_COLLECT, "tasks")),
    out_path: Path = typer.Option(..., "--out", help=_help(_COLLECT, "out")),
    policy: Optional[str] = typer.Option(None, help=_help(_COLLECT, "policy")),
    episodes_per_task: Optional[int] = typer.Option(
        None, help=_help(_COLLECT, "episodes_per_task")),
    epsilon: Optional[float] = typer.Option(None, help=_help(_COLLECT, "epsilon")),
    max_steps: Optional[int] = typer.Option(None, help=_help(_COLLECT, "max_steps")),
    workers: Optional[int] = typer.Option(None, help=_help(_COLLECT, "workers")),
    ray: Optional[str] = typer.Option(None, "--ray", help=_help(_COLLECT, "ray")),
    seed: Optional[int] = typer.Option(None, help=_help(_COLLECT, "seed")),
    config: Optional[Path] = CONFIG_OPT,
    force: bool = _force(_COLLECT),
    as_json: bool = JSON_OPT,
) -> None:
    """Run a policy in a real environment and write canonical trajectories."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import collect as stage

    c = cfg.build(stage.CollectConfig, config, tasks=tasks, out=out_path, policy=policy,
                  episodes_per_task=episodes_per_task, epsilon=epsilon, max_steps=max_steps,
                  workers=workers, ray=ray, seed=seed, force=force or None)
    emit(stage.run(c), as_json, stage.render)


# ----------------------------------------------------------------------------------------------
# ingest


_INGEST = "dreamgym_cli.stages.ingest.IngestConfig"


@app.command("ingest")
def ingest(
    files: list[Path] = typer.Argument(..., help=_help(_INGEST, "files")),
    store: Path = typer.Option(..., "--store", help=_help(_INGEST, "store")),
    fmt: Optional[str] = typer.Option(None, "--format", help=_help(_INGEST, "format")),
    env: Optional[str] = typer.Option(None, help=_help(_INGEST, "env")),
    source: Optional[str] = typer.Option(None, help=_help(_INGEST, "source")),
    embed: Optional[bool] = typer.Option(None, "--embed/--no-embed", help=_help(_INGEST, "embed")),
    batch_steps: Optional[int] = typer.Option(None, help=_help(_INGEST, "batch_steps")),
    on_error: Optional[str] = typer.Option(None, "--on-error", help=_help(_INGEST, "on_error")),
    rejects: Optional[Path] = typer.Option(None, help=_help(_INGEST, "rejects")),
    config: Optional[Path] = CONFIG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Read trajectory files into a replay store (validated, deduplicated, atomic)."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import ingest as stage

    c = cfg.build(stage.IngestConfig, config, files=tuple(files), store=store, format=fmt,
                  env=env, source=source, embed=embed, batch_steps=batch_steps,
                  on_error=on_error, rejects=rejects)
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


# ----------------------------------------------------------------------------------------------
# annotate / train-em / eval-em (the experience model)


def _render_metrics(title: str, skip: tuple[str, ...] = ()):
    def render(result: dict) -> None:
        from rich.table import Table

        table = Table(title=title)
        table.add_column("key")
        table.add_column("value", justify="right")
        for k, v in result.items():
            if k in skip or isinstance(v, (list, dict)):
                continue
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
        out.print(table)

    return render


_ANNOTATE = "dreamgym_cli.stages.annotate.AnnotateConfig"


@app.command("annotate")
def annotate(
    store: Path = typer.Option(..., help=_help(_ANNOTATE, "store")),
    teacher_url: Optional[str] = typer.Option(None, help=_help(_ANNOTATE, "teacher_url")),
    teacher_model: Optional[str] = typer.Option(None, help=_help(_ANNOTATE, "teacher_model")),
    requests_per_second: Optional[float] = typer.Option(
        None, help=_help(_ANNOTATE, "requests_per_second")),
    concurrency: Optional[int] = typer.Option(None, help=_help(_ANNOTATE, "concurrency")),
    source: Optional[str] = typer.Option(None, help=_help(_ANNOTATE, "source")),
    config: Optional[Path] = CONFIG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Fill the reasoning of the store's transitions (offline rules, or a teacher LLM)."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import annotate as stage
    from dreamgym_cli.ui import step_progress

    c = cfg.build(stage.AnnotateConfig, config, store=store, teacher_url=teacher_url,
                  teacher_model=teacher_model, requests_per_second=requests_per_second,
                  concurrency=concurrency, source=source)
    with step_progress(f"annotate ({c.annotator})") as update:
        result = stage.run(c, progress=update)
    emit(result, as_json, _render_metrics("annotate"))


_TRAIN_EM = "dreamgym_cli.stages.train_em.TrainEMConfig"


@app.command("train-em")
def train_em(
    store: Path = typer.Option(..., help=_help(_TRAIN_EM, "store")),
    out_path: Path = typer.Option(..., "--out", help=_help(_TRAIN_EM, "out")),
    base: Optional[str] = typer.Option(None, help=_help(_TRAIN_EM, "base")),
    epochs: Optional[float] = typer.Option(None, help=_help(_TRAIN_EM, "epochs")),
    max_steps: Optional[int] = typer.Option(None, help=_help(_TRAIN_EM, "max_steps")),
    batch_size: Optional[int] = typer.Option(None, help=_help(_TRAIN_EM, "batch_size")),
    lr: Optional[float] = typer.Option(None, help=_help(_TRAIN_EM, "lr")),
    max_length: Optional[int] = typer.Option(None, help=_help(_TRAIN_EM, "max_length")),
    retrieval_k: Optional[int] = typer.Option(None, help=_help(_TRAIN_EM, "retrieval_k")),
    history: Optional[int] = typer.Option(None, help=_help(_TRAIN_EM, "history")),
    task_examples: Optional[int] = typer.Option(None, help=_help(_TRAIN_EM, "task_examples")),
    reasoning: Optional[bool] = typer.Option(None, "--reasoning/--no-reasoning",
                                             help=_help(_TRAIN_EM, "reasoning")),
    full: Optional[bool] = typer.Option(None, "--full/--lora", help=_help(_TRAIN_EM, "full")),
    lora_r: Optional[int] = typer.Option(None, help=_help(_TRAIN_EM, "lora_r")),
    lora_alpha: Optional[int] = typer.Option(None, help=_help(_TRAIN_EM, "lora_alpha")),
    lora_targets: Optional[str] = typer.Option(None, help=_help(_TRAIN_EM, "lora_targets")),
    seed: Optional[int] = typer.Option(None, help=_help(_TRAIN_EM, "seed")),
    eval_every: Optional[int] = typer.Option(None, help=_help(_TRAIN_EM, "eval_every")),
    checkpoint_every: Optional[int] = typer.Option(None,
                                                   help=_help(_TRAIN_EM, "checkpoint_every")),
    resume: bool = typer.Option(False, "--resume", help=_help(_TRAIN_EM, "resume")),
    config: Optional[Path] = CONFIG_OPT,
    force: bool = _force(_TRAIN_EM),
    as_json: bool = JSON_OPT,
) -> None:
    """Fine-tune the experience model (loss on reasoning + next state + reward/done)."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import train_em as stage
    from dreamgym_cli.ui import loss_info, step_progress

    c = cfg.build(stage.TrainEMConfig, config, store=store, out=out_path, base=base,
                  epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr,
                  max_length=max_length, retrieval_k=retrieval_k, history=history,
                  task_examples=task_examples,
                  reasoning=reasoning, full=full, lora_r=lora_r, lora_alpha=lora_alpha,
                  lora_targets=lora_targets, seed=seed, eval_every=eval_every,
                  checkpoint_every=checkpoint_every, resume=resume or None, force=force or None)
    with step_progress("train-em", fmt=loss_info) as update:
        result = stage.run(c, progress=update)
    emit(result, as_json, _render_metrics("train-em", skip=("heldout_episode_ids",)))


_EVAL_EM = "dreamgym_cli.stages.eval_em.EvalEMConfig"


@app.command("eval-em")
def eval_em(
    em: Path = typer.Option(..., help=_help(_EVAL_EM, "em")),
    episodes: Path = typer.Option(..., help=_help(_EVAL_EM, "episodes")),
    out_path: Path = typer.Option(..., "--out", help=_help(_EVAL_EM, "out")),
    store: Optional[Path] = typer.Option(None, help=_help(_EVAL_EM, "store")),
    batch_size: Optional[int] = typer.Option(None, help=_help(_EVAL_EM, "batch_size")),
    max_episodes: Optional[int] = typer.Option(None, help=_help(_EVAL_EM, "max_episodes")),
    multistep: Optional[bool] = typer.Option(None, "--multistep/--no-multistep",
                                             help=_help(_EVAL_EM, "multistep")),
    max_retries: Optional[int] = typer.Option(None, help=_help(_EVAL_EM, "max_retries")),
    retrieval_keys: Optional[str] = typer.Option(None, help=_help(_EVAL_EM, "retrieval_keys")),
    config: Optional[Path] = CONFIG_OPT,
    force: bool = _force(_EVAL_EM),
    as_json: bool = JSON_OPT,
) -> None:
    """Fidelity of the experience model on held-out real transitions."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import eval_em as stage
    from dreamgym_cli.ui import step_progress

    c = cfg.build(stage.EvalEMConfig, config, em=em, episodes=episodes, out=out_path,
                  store=store, batch_size=batch_size, max_episodes=max_episodes,
                  multistep=multistep, max_retries=max_retries,
                  retrieval_keys=retrieval_keys, force=force or None)
    with step_progress("eval-em") as update:
        result = stage.run(c, progress=update)
    emit(result, as_json, stage.render)


# ----------------------------------------------------------------------------------------------
# train-agent / rollout / eval (the policy)

_AGENT = "dreamgym_cli.stages.train_agent.TrainAgentConfig"


def _rl_info(metrics: dict) -> str:
    """Progress text: SFT's losses, or an RL iteration's success rate, KL and loss."""
    from dreamgym_cli.ui import loss_info

    parts = [f"{k.split('/')[-1]} {metrics[k]:.3g}" for k in
             ("rollout/success_rate", "train/kl") if metrics.get(k) is not None]
    return "  ".join(parts + [loss_info(metrics)])


@app.command("train-agent")
def train_agent(
    algo: Optional[str] = typer.Option(None, help=_help(_AGENT, "algo")),
    out_path: Path = typer.Option(..., "--out", help=_help(_AGENT, "out")),
    store: Optional[Path] = typer.Option(None, help=_help(_AGENT, "store")),
    base: Optional[str] = typer.Option(None, help=_help(_AGENT, "base")),
    init: Optional[Path] = typer.Option(None, help=_help(_AGENT, "init")),
    env: Optional[str] = typer.Option(None, help=_help(_AGENT, "env")),
    tasks: Optional[Path] = typer.Option(None, help=_help(_AGENT, "tasks")),
    iterations: Optional[int] = typer.Option(None, help=_help(_AGENT, "iterations")),
    max_steps: Optional[int] = typer.Option(None, help=_help(_AGENT, "max_steps")),
    epochs: Optional[float] = typer.Option(None, help=_help(_AGENT, "epochs")),
    batch_size: Optional[int] = typer.Option(None, help=_help(_AGENT, "batch_size")),
    sft_data: Optional[str] = typer.Option(None, help=_help(_AGENT, "sft_data")),
    sft_all: Optional[bool] = typer.Option(None, "--sft-all", help=_help(_AGENT, "sft_all")),
    group_size: Optional[int] = typer.Option(None, help=_help(_AGENT, "group_size")),
    batch_tasks: Optional[int] = typer.Option(None, help=_help(_AGENT, "batch_tasks")),
    lr: Optional[float] = typer.Option(None, help=_help(_AGENT, "lr")),
    kl_coef: Optional[float] = typer.Option(None, help=_help(_AGENT, "kl_coef")),
    kl_estimator: Optional[str] = typer.Option(None, help=_help(_AGENT, "kl_estimator")),
    ppo_epochs: Optional[int] = typer.Option(None, help=_help(_AGENT, "ppo_epochs")),
    mini_batches: Optional[int] = typer.Option(None, help=_help(_AGENT, "mini_batches")),
    warmup_steps: Optional[int] = typer.Option(None, help=_help(_AGENT, "warmup_steps")),
    value_lr: Optional[float] = typer.Option(None, help=_help(_AGENT, "value_lr")),
    value_detach: Optional[bool] = typer.Option(None, "--value-detach/--value-shared",
                                                help=_help(_AGENT, "value_detach")),
    invalid_penalty: Optional[float] = typer.Option(None, help=_help(_AGENT, "invalid_penalty")),
    temperature: Optional[float] = typer.Option(None, help=_help(_AGENT, "temperature")),
    action_interface: Optional[str] = typer.Option(None, help=_help(_AGENT,
                                                                    "action_interface")),
    retrieve_synthetic: Optional[bool] = typer.Option(
        None, "--retrieve-synthetic/--retrieve-real", help=_help(_AGENT, "retrieve_synthetic")),
    eval_tasks: Optional[Path] = typer.Option(None, help=_help(_AGENT, "eval_tasks")),
    eval_every: Optional[int] = typer.Option(None, help=_help(_AGENT, "eval_every")),
    eval_turns: Optional[int] = typer.Option(None, help=_help(_AGENT, "eval_turns")),
    entropy_coef: Optional[float] = typer.Option(None, help=_help(_AGENT, "entropy_coef")),
    outcome: Optional[str] = typer.Option(None, help=_help(_AGENT, "outcome")),
    max_steps_per_episode: Optional[int] = typer.Option(
        None, help=_help(_AGENT, "max_steps_per_episode")),
    max_real_steps: Optional[int] = typer.Option(None, help=_help(_AGENT, "max_real_steps")),
    max_new_tokens: Optional[int] = typer.Option(None, help=_help(_AGENT, "max_new_tokens")),
    history_budget_tokens: Optional[int] = typer.Option(
        None, help=_help(_AGENT, "history_budget_tokens")),
    think: Optional[bool] = typer.Option(None, "--think/--no-think", help=_help(_AGENT, "think")),
    enrich: Optional[bool] = typer.Option(None, "--enrich/--no-enrich",
                                          help=_help(_AGENT, "enrich")),
    curriculum: Optional[bool] = typer.Option(None, "--curriculum/--no-curriculum",
                                              help=_help(_AGENT, "curriculum")),
    curriculum_every: Optional[int] = typer.Option(None, help=_help(_AGENT, "curriculum_every")),
    lambda_: Optional[float] = typer.Option(None, "--lambda", help=_help(_AGENT, "lambda_")),
    seeds_per_round: Optional[int] = typer.Option(None, help=_help(_AGENT, "seeds_per_round")),
    candidates: Optional[int] = typer.Option(None, help=_help(_AGENT, "candidates")),
    zero_variance_weight: Optional[float] = typer.Option(
        None, help=_help(_AGENT, "zero_variance_weight")),
    workers: Optional[int] = typer.Option(None, help=_help(_AGENT, "workers")),
    ray: Optional[str] = typer.Option(None, "--ray", help=_help(_AGENT, "ray")),
    rollout_server: Optional[str] = typer.Option(None, help=_help(_AGENT, "rollout_server")),
    rollout_sync_dir: Optional[Path] = typer.Option(None,
                                                    help=_help(_AGENT, "rollout_sync_dir")),
    full: Optional[bool] = typer.Option(None, "--full/--lora", help=_help(_AGENT, "full")),
    seed: Optional[int] = typer.Option(None, help=_help(_AGENT, "seed")),
    resume: bool = typer.Option(False, "--resume", help=_help(_AGENT, "resume")),
    config: Optional[Path] = CONFIG_OPT,
    force: bool = _force(_AGENT),
    as_json: bool = JSON_OPT,
) -> None:
    """Train a policy: sft (behaviour cloning), grpo or ppo (in dream:EM or a real env)."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import train_agent as stage
    from dreamgym_cli.ui import step_progress

    c = cfg.build(stage.TrainAgentConfig, config, algo=algo, out=out_path, store=store,
                  base=base, init=init, env=env, tasks=tasks, iterations=iterations,
                  max_steps=max_steps, epochs=epochs, batch_size=batch_size, sft_all=sft_all,
                  sft_data=sft_data, warmup_steps=warmup_steps, value_lr=value_lr,
                  value_detach=value_detach, invalid_penalty=invalid_penalty,
                  temperature=temperature, retrieve_synthetic=retrieve_synthetic,
                  action_interface=action_interface,
                  eval_tasks=eval_tasks, eval_every=eval_every, eval_turns=eval_turns,
                  group_size=group_size, batch_tasks=batch_tasks, lr=lr, kl_coef=kl_coef,
                  kl_estimator=kl_estimator, ppo_epochs=ppo_epochs, mini_batches=mini_batches,
                  entropy_coef=entropy_coef, outcome=outcome,
                  max_steps_per_episode=max_steps_per_episode, max_real_steps=max_real_steps,
                  max_new_tokens=max_new_tokens, history_budget_tokens=history_budget_tokens,
                  think=think, enrich=enrich,
                  curriculum=curriculum, curriculum_every=curriculum_every, lambda_=lambda_,
                  seeds_per_round=seeds_per_round, candidates=candidates,
                  zero_variance_weight=zero_variance_weight, workers=workers,
                  ray=ray, rollout_server=rollout_server, rollout_sync_dir=rollout_sync_dir,
                  full=full, seed=seed, resume=resume or None, force=force or None)
    with step_progress(f"train-agent ({c.algo})", fmt=_rl_info) as update:
        result = stage.run(c, progress=update)
    emit(result, as_json, _render_metrics("train-agent"))


_ROLLOUT = "dreamgym_cli.stages.rollout.RolloutConfig"


@app.command("rollout")
def rollout(
    policy: Path = typer.Option(..., help=_help(_ROLLOUT, "policy")),
    tasks: Path = typer.Option(..., help=_help(_ROLLOUT, "tasks")),
    store: Path = typer.Option(..., help=_help(_ROLLOUT, "store")),
    env: Optional[str] = typer.Option(None, help=_help(_ROLLOUT, "env")),
    episodes_per_task: Optional[int] = typer.Option(
        None, help=_help(_ROLLOUT, "episodes_per_task")),
    max_steps_per_episode: Optional[int] = typer.Option(
        None, help=_help(_ROLLOUT, "max_steps_per_episode")),
    temperature: Optional[float] = typer.Option(None, help=_help(_ROLLOUT, "temperature")),
    action_interface: Optional[str] = typer.Option(
        None, help=_help(_ROLLOUT, "action_interface")),
    workers: Optional[int] = typer.Option(None, help=_help(_ROLLOUT, "workers")),
    ray: Optional[str] = typer.Option(None, "--ray", help=_help(_ROLLOUT, "ray")),
    seed: Optional[int] = typer.Option(None, help=_help(_ROLLOUT, "seed")),
    config: Optional[Path] = CONFIG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Run a policy in an env and append its episodes to the replay store."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import rollout as stage
    from dreamgym_cli.ui import step_progress

    c = cfg.build(stage.RolloutConfig, config, policy=policy, tasks=tasks, store=store, env=env,
                  episodes_per_task=episodes_per_task,
                  max_steps_per_episode=max_steps_per_episode, temperature=temperature,
                  action_interface=action_interface, workers=workers, ray=ray, seed=seed)
    with step_progress("rollout (turns)") as update:
        result = stage.run(c, progress=update)
    emit(result, as_json, _render_metrics("rollout"))


_EVAL = "dreamgym_cli.stages.eval.EvalConfig"


@app.command("eval")
def eval_policy(
    policy: Path = typer.Option(..., help=_help(_EVAL, "policy")),
    tasks: Path = typer.Option(..., help=_help(_EVAL, "tasks")),
    out_path: Path = typer.Option(..., "--out", help=_help(_EVAL, "out")),
    env: Optional[str] = typer.Option(None, help=_help(_EVAL, "env")),
    episodes_per_task: Optional[int] = typer.Option(None, help=_help(_EVAL, "episodes_per_task")),
    action_interface: Optional[str] = typer.Option(None, help=_help(_EVAL, "action_interface")),
    greedy: Optional[bool] = typer.Option(None, "--greedy/--sample", help=_help(_EVAL, "greedy")),
    max_steps_per_episode: Optional[int] = typer.Option(
        None, help=_help(_EVAL, "max_steps_per_episode")),
    workers: Optional[int] = typer.Option(None, help=_help(_EVAL, "workers")),
    ray: Optional[str] = typer.Option(None, "--ray", help=_help(_EVAL, "ray")),
    seed: Optional[int] = typer.Option(None, help=_help(_EVAL, "seed")),
    config: Optional[Path] = CONFIG_OPT,
    force: bool = _force(_EVAL),
    as_json: bool = JSON_OPT,
) -> None:
    """Success rate (95% Wilson CI), return, length and invalid actions in a real env."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import eval as stage
    from dreamgym_cli.ui import step_progress

    c = cfg.build(stage.EvalConfig, config, policy=policy, tasks=tasks, out=out_path, env=env,
                  episodes_per_task=episodes_per_task, greedy=greedy,
                  action_interface=action_interface,
                  max_steps_per_episode=max_steps_per_episode, workers=workers, ray=ray,
                  seed=seed, force=force or None)
    with step_progress("eval (turns)") as update:
        result = stage.run(c, progress=update)
    emit(result, as_json, stage.render)


# ----------------------------------------------------------------------------------------------
# serve (an env over AgentGym's HTTP protocol)

_SERVE = "dreamgym_cli.stages.serve.ServeConfig"


@app.command("serve")
def serve(
    em: Optional[Path] = typer.Option(None, help=_help(_SERVE, "em")),
    env: Optional[str] = typer.Option(None, help=_help(_SERVE, "env")),
    env_name: Optional[str] = typer.Option(None, help=_help(_SERVE, "env_name")),
    tasks: Optional[Path] = typer.Option(None, help=_help(_SERVE, "tasks")),
    host: Optional[str] = typer.Option(None, help=_help(_SERVE, "host")),
    port: Optional[int] = typer.Option(None, help=_help(_SERVE, "port")),
    dialect: Optional[str] = typer.Option(None, help=_help(_SERVE, "dialect")),
    max_sessions: Optional[int] = typer.Option(None, help=_help(_SERVE, "max_sessions")),
    idle_timeout: Optional[float] = typer.Option(None, help=_help(_SERVE, "idle_timeout")),
    max_steps: Optional[int] = typer.Option(None, help=_help(_SERVE, "max_steps")),
    store: Optional[Path] = typer.Option(None, help=_help(_SERVE, "store")),
    max_new_tokens: Optional[int] = typer.Option(None, help=_help(_SERVE, "max_new_tokens")),
    max_retries: Optional[int] = typer.Option(None, help=_help(_SERVE, "max_retries")),
    agentgym_env: Optional[str] = typer.Option(None, help=_help(_SERVE, "agentgym_env")),
    reward: Optional[str] = typer.Option(None, help=_help(_SERVE, "reward")),
    step_timeout: Optional[float] = typer.Option(None, help=_help(_SERVE, "step_timeout")),
    max_body_bytes: Optional[int] = typer.Option(None, help=_help(_SERVE, "max_body_bytes")),
    body_timeout: Optional[float] = typer.Option(None, help=_help(_SERVE, "body_timeout")),
    max_action_chars: Optional[int] = typer.Option(None,
                                                   help=_help(_SERVE, "max_action_chars")),
    item_ids: Optional[Path] = typer.Option(None, help=_help(_SERVE, "item_ids")),
    config: Optional[Path] = CONFIG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Serve the dream env (--em) or a real env (--env) over AgentGym's HTTP protocol."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import serve as stage

    c = cfg.build(stage.ServeConfig, config, em=em, env=env, env_name=env_name, tasks=tasks,
                  host=host, port=port, dialect=dialect, max_sessions=max_sessions,
                  idle_timeout=idle_timeout, max_steps=max_steps, store=store,
                  max_new_tokens=max_new_tokens, max_retries=max_retries,
                  agentgym_env=agentgym_env, reward=reward, step_timeout=step_timeout,
                  max_body_bytes=max_body_bytes, body_timeout=body_timeout,
                  max_action_chars=max_action_chars, item_ids=item_ids)
    announce = lambda s: err.print(  # noqa: E731 — stdout stays for the --json summary
        f"serving {s['env_name']} ({'dream env' if s['dream'] else 'real env'}, {s['tasks']} "
        f"tasks, shape {s['shape']}, {s['reward']} rewards) at {s['url']}; Ctrl-C to stop",
        highlight=False,
        soft_wrap=True)
    emit(stage.run(c, announce=announce), as_json)


_EXPORT = "dreamgym_cli.stages.export_policy.ExportPolicyConfig"


@app.command("export-policy")
def export_policy(
    policy: Path = typer.Option(..., help=_help(_EXPORT, "policy")),
    out_path: Path = typer.Option(..., "--out", help=_help(_EXPORT, "out")),
    config: Optional[Path] = CONFIG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Write a policy as the model dir a vLLM rollout server serves (train-agent
    --rollout-server pushes the trained weights into it)."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import export_policy as stage

    c = cfg.build(stage.ExportPolicyConfig, config, policy=policy, out=out_path)
    emit(stage.run(c), as_json)


# ----------------------------------------------------------------------------------------------
# tasks evolve (the curriculum's task variation)

_EVOLVE = "dreamgym_cli.stages.evolve.EvolveConfig"


@tasks_app.command("evolve")
def tasks_evolve(
    em: Path = typer.Option(..., help=_help(_EVOLVE, "em")),
    rollouts: Path = typer.Option(..., help=_help(_EVOLVE, "rollouts")),
    pool: Path = typer.Option(..., help=_help(_EVOLVE, "pool")),
    out_path: Path = typer.Option(..., "--out", help=_help(_EVOLVE, "out")),
    seeds_per_round: Optional[int] = typer.Option(None, help=_help(_EVOLVE, "seeds_per_round")),
    candidates: Optional[int] = typer.Option(None, help=_help(_EVOLVE, "candidates")),
    outcome: Optional[str] = typer.Option(None, help=_help(_EVOLVE, "outcome")),
    source: Optional[str] = typer.Option(None, help=_help(_EVOLVE, "source")),
    temperature: Optional[float] = typer.Option(None, help=_help(_EVOLVE, "temperature")),
    max_new_tokens: Optional[int] = typer.Option(None, help=_help(_EVOLVE, "max_new_tokens")),
    seed: Optional[int] = typer.Option(None, help=_help(_EVOLVE, "seed")),
    config: Optional[Path] = CONFIG_OPT,
    force: bool = _force(_EVOLVE),
    as_json: bool = JSON_OPT,
) -> None:
    """Add harder variations of high-variance tasks, written by the experience model."""
    from dreamgym_cli import config as cfg
    from dreamgym_cli.stages import evolve as stage
    from dreamgym_cli.ui import step_progress

    c = cfg.build(stage.EvolveConfig, config, em=em, rollouts=rollouts, pool=pool, out=out_path,
                  seeds_per_round=seeds_per_round, candidates=candidates, outcome=outcome,
                  source=source, temperature=temperature, max_new_tokens=max_new_tokens,
                  seed=seed, force=force or None)
    with step_progress("tasks evolve") as update:
        result = stage.run(c, progress=update)
    emit(result, as_json, stage.render)


if __name__ == "__main__":  # pragma: no cover
    app()
