"""`dreamgym eval`: a policy's success in a real env on held-out tasks, with a report.

Success rate with a 95 % Wilson interval, mean return and length, invalid-action and format-error
rates, per-task results; `results.json`, `report.md` and `success.png` in the output directory.
Greedy decoding by default (`--sample` samples at temperature 1). The evaluated episodes are kept
as canonical trajectories in `episodes.jsonl` (source `real`): `eval-em --episodes R/episodes.jsonl`
measures an experience model on the policy's own held-out real transitions.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from dreamgym_cli.artifacts import ArtifactRun
from dreamgym_cli.config import option, require_paths, to_dict
from dreamgym_cli.errors import InputError

Z_95 = 1.959963984540054


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    policy: Path = option(None, help="Policy directory (from train-agent).")
    tasks: Path = option(None, help="Held-out task file.")
    out: Path = option(None, help="Report directory to write.")
    env: str | None = option(None, help="Real env (default: the tasks' env).")
    episodes_per_task: int = option(1, help="Episodes per task.")
    greedy: bool = option(True, help="Greedy decoding (--sample: temperature 1).")
    action_interface: str = option("free", help="free: the env gets the generated action as "
                                   "is; listed: the most similar listed action.")
    max_steps_per_episode: int | None = option(None, help="Turn limit (default: the task's).")
    workers: int | None = option(None, help="Real env worker processes (0: in process).")
    ray: str | None = option(None, help="Env workers as Ray actors: 'local' starts Ray here, "
                             "else a cluster address (e.g. 'auto').")
    seed: int = option(0, help="Seed for sampling.")
    force: bool = option(False, help="Re-evaluate even if the report is up to date.")

    def __post_init__(self):
        require_paths(self, "policy", "tasks", "out")
        from dreamgym_cli.rl.rollout import ACTION_INTERFACES

        if self.action_interface not in ACTION_INTERFACES:
            from dreamgym_cli.errors import unknown_name

            raise unknown_name("action interface", self.action_interface, ACTION_INTERFACES,
                               field="action_interface")
        if self.episodes_per_task < 1:
            raise InputError(f"expected >= 1, got {self.episodes_per_task}",
                             field="episodes_per_task")
        if self.max_steps_per_episode is not None and self.max_steps_per_episode < 1:
            raise InputError(f"expected >= 1, got {self.max_steps_per_episode}",
                             field="max_steps_per_episode")


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def summarize(episodes) -> dict[str, Any]:
    """Overall and per-task results of evaluated episodes."""
    from dreamgym_cli.rl.rollout import rollout_metrics

    n = len(episodes)
    wins = sum(e.success for e in episodes)
    low, high = wilson_interval(wins, n)
    per_task: dict[str, dict] = {}
    for e in episodes:
        row = per_task.setdefault(e.task.task_id, {"task_id": e.task.task_id, "episodes": 0,
                                                   "successes": 0, "return_sum": 0.0,
                                                   "length_sum": 0})
        row["episodes"] += 1
        row["successes"] += int(e.success)
        row["return_sum"] += e.total_return
        row["length_sum"] += e.length
    tasks = [{"task_id": r["task_id"], "episodes": r["episodes"],
              "success_rate": r["successes"] / r["episodes"],
              "mean_return": r["return_sum"] / r["episodes"],
              "mean_length": r["length_sum"] / r["episodes"]} for r in per_task.values()]
    m = rollout_metrics(episodes)
    return {"episodes": n, "successes": wins, "success_rate": wins / n if n else 0.0,
            "success_ci95": [low, high], "mean_return": m["rollout/return_mean"],
            "mean_length": m["rollout/length_mean"],
            "invalid_action_rate": m["rollout/invalid_action_rate"],
            "format_error_rate": m["rollout/format_error_rate"], "per_task": tasks}


def run(config: EvalConfig, progress=None) -> dict[str, Any]:
    from dreamgym_cli.rl.policy import PolicySettings
    from dreamgym_cli.rl.rollout import episode_records
    from dreamgym_cli.trajectories import write_episodes

    PolicySettings.load(config.policy)  # a clear error before anything heavy
    with ArtifactRun("eval", config.out, to_dict(config), force=config.force,
                     inputs={"policy": config.policy, "tasks": config.tasks},
                     fingerprint_config={k: v for k, v in to_dict(config).items()
                                         if k not in ("force", "workers", "ray")}) as run_:
        if run_.up_to_date:
            return {"out": str(config.out), "skipped": True, **run_.previous["metrics"]}
        result, episodes = _evaluate(config, progress)
        write_episodes(run_.tmp / "episodes.jsonl",
                       episode_records(episodes, "real", config.policy.resolve().name))
        (run_.tmp / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        (run_.tmp / "report.md").write_text(report_markdown(result, config))
        plot(result, run_.tmp / "success.png")
        manifest = run_.commit(metrics=result)
    return {"out": str(config.out), "skipped": False, **manifest["metrics"]}


def _evaluate(config: EvalConfig, progress) -> tuple[dict[str, Any], list]:
    from dreamgym_cli.envs.registry import is_dream_name
    from dreamgym_cli.rl.session import PolicySession
    from dreamgym_cli.rl.task_pool import read_task_pool, tasks_env

    tasks = read_task_pool(config.tasks)
    env_name = config.env or tasks_env(tasks, config.tasks)
    if is_dream_name(env_name):
        raise InputError("eval measures a policy in a real env; use `rollout` for the dream env",
                         field="env")
    with PolicySession.from_policy_dir(
            config.policy, env_name, temperature=0.0 if config.greedy else 1.0,
            max_turns=config.max_steps_per_episode, seed=config.seed,
            action_interface=config.action_interface,
            env_options={"max_steps": config.max_steps_per_episode, "workers": config.workers,
                         "ray": config.ray}) as session:
        episodes = session.run(tasks, group_size=config.episodes_per_task, progress=progress)
    return {"policy": str(config.policy), "env": env_name, "greedy": config.greedy,
            **summarize(episodes)}, episodes


def report_markdown(result: dict[str, Any], config: EvalConfig) -> str:
    low, high = result["success_ci95"]
    lines = [f"# Evaluation of `{config.policy}`", "",
             f"Env `{result['env']}`, tasks `{config.tasks}`, "
             f"{'greedy' if result['greedy'] else 'sampled'} decoding.", "",
             "| metric | value |", "|---|---|",
             f"| success rate | {result['success_rate']:.3f} (95% CI {low:.3f}–{high:.3f}) |",
             f"| episodes | {result['episodes']} |",
             f"| mean return | {result['mean_return']:.3f} |",
             f"| mean length | {result['mean_length']:.2f} |",
             f"| invalid-action rate | {result['invalid_action_rate']:.3f} |",
             f"| format-error rate | {result['format_error_rate']:.3f} |", "",
             "## Per task", "", "| task | episodes | success | return | length |",
             "|---|---|---|---|---|"]
    for t in result["per_task"]:
        lines.append(f"| {t['task_id']} | {t['episodes']} | {t['success_rate']:.2f} | "
                     f"{t['mean_return']:.2f} | {t['mean_length']:.1f} |")
    return "\n".join(lines) + "\n\n![success](success.png)\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t["task_id"] for t in result["per_task"]] + ["overall"]
    rates = [t["success_rate"] for t in result["per_task"]] + [result["success_rate"]]
    low, high = result["success_ci95"]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.2))
    bars = ax.bar(range(len(names)), rates, color=["#7a9cc6"] * (len(names) - 1) + ["#2b5d8a"])
    ax.errorbar([len(names) - 1], [result["success_rate"]],
                yerr=[[result["success_rate"] - low], [high - result["success_rate"]]],
                fmt="none", ecolor="black", capsize=4)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.set_title("success per task (overall with 95% Wilson CI)")
    del bars
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"eval → {result['out']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    low, high = result["success_ci95"]
    table.add_row("success rate", f"{result['success_rate']:.3f} [{low:.3f}, {high:.3f}]")
    for key in ("episodes", "mean_return", "mean_length", "invalid_action_rate",
                "format_error_rate"):
        value = result[key]
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)
