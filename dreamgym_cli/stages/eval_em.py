"""`dreamgym eval-em`: how closely the experience model matches held-out *real* transitions.

Single step (teacher-forced): for every held-out real transition the model sees the real history,
state and action and predicts the next state, reward, done and success (greedy). Reported:
reward / done / success accuracy, next-state exact match and token F1, admissible-set F1 (the
`Actions:` line), first-attempt parse failures and invalid transitions after retries, and the
paper's error terms: ε_R = mean |r̂ − r| and ε_P = 1 − next-state token F1.

Multi-step: the actions of each held-out real episode are replayed in the dream env, which now
feeds on its own predictions; the episode outcome (success) is compared with the real one.

Writes fidelity.json, report.md, fidelity.png and examples.jsonl (the worst predictions) into
the output directory; retrieval never returns transitions of the episode being predicted.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from dreamgym_cli.artifacts import ArtifactRun
from dreamgym_cli.config import option, to_dict
from dreamgym_cli.errors import InputError


@dataclasses.dataclass(frozen=True)
class EvalEMConfig:
    em: Path = option(None, help="Experience-model directory (from train-em).")
    episodes: Path = option(None, help="Held-out real episodes (.jsonl/.parquet from collect).")
    out: Path = option(None, help="Report directory to write.")
    store: Path | None = option(None, help="Store for retrieval (default: the one the model "
                                "was trained with).")
    batch_size: int = option(16, help="Transitions predicted per generation call.")
    max_episodes: int | None = option(None, help="Evaluate at most this many episodes.")
    max_retries: int = option(2, help="Regenerations of an unparseable completion.")
    multistep: bool = option(True, help="Also replay whole episodes in the dream env.")
    seed: int = option(0, help="Seed for retries' sampling.")
    retrieval_keys: str = option("full", help="Embedding keys retrieval searches: full (the "
                                 "store's default), parts or full-bf16.")
    force: bool = option(False, help="Re-evaluate even if the report is up to date.")

    def __post_init__(self):
        for name in ("em", "episodes", "out"):
            if getattr(self, name) is None:
                raise InputError("is required", field=name)
            object.__setattr__(self, name, Path(getattr(self, name)))


_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def token_f1(pred: str, gold: str) -> float:
    """Bag-of-tokens F1 (SQuAD style); 1.0 when both are empty."""
    p, g = Counter(tokens(pred)), Counter(tokens(gold))
    if not p and not g:
        return 1.0
    overlap = sum((p & g).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(g.values())
    return 2 * precision * recall / (precision + recall)


def set_f1(pred: list[str] | None, gold: list[str] | None) -> float | None:
    """F1 of two action sets; None when the real state lists no actions."""
    if not gold:
        return None
    p, g = {a.strip().lower() for a in pred or []}, {a.strip().lower() for a in gold}
    overlap = len(p & g)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(p), overlap / len(g)
    return 2 * precision * recall / (precision + recall)


def run(config: EvalEMConfig, progress=None) -> dict[str, Any]:
    from dreamgym_cli.trajectories import read_episodes

    inputs = {"em": config.em, "episodes": config.episodes}
    if config.store is not None:
        inputs["store"] = config.store
    with ArtifactRun("eval-em", config.out, to_dict(config), inputs=inputs,
                     force=config.force) as run_:
        if run_.up_to_date:
            return {"out": str(config.out), "skipped": True, **run_.previous["metrics"]}
        episodes = [e for e in read_episodes(config.episodes) if e[1]["source"] == "real"]
        if config.max_episodes:
            episodes = episodes[:config.max_episodes]
        if not episodes:
            raise InputError("no real episodes to evaluate against", file=config.episodes)
        from dreamgym_cli.envs.dream import DreamEnv

        env = DreamEnv(config.em, store=config.store, max_retries=config.max_retries,
                       seed=config.seed, retrieval_keys=config.retrieval_keys)
        try:
            rows = _single_step(env, episodes, config.batch_size, progress)
            multi = _multi_step(env, episodes, config.batch_size) if config.multistep else []
        finally:
            env.close()
        metrics = summarize(rows, multi)
        _write_report(run_.tmp, config, metrics, rows, multi)
        run_.commit(metrics=metrics)
    return {"out": str(config.out), "skipped": False, **metrics}


def _single_step(env, episodes, batch_size: int, progress) -> list[dict]:
    from dreamgym_cli.envs.dream import TransitionQuery, admissible_from_state
    from dreamgym_cli.schema import Task

    items = []
    for task_row, episode, steps in episodes:
        task = Task.from_row(task_row)
        for i, s in enumerate(steps):
            query = TransitionQuery(task=task, state=s["state"], action=s["action"],
                                    history=steps[:i], exclude=frozenset({episode["episode_id"]}))
            items.append((query, s))
    rows = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        predictions = env.predict([query for query, _ in chunk])
        for (_, gold), pred in zip(chunk, predictions):
            rows.append(_compare(gold, pred.transition, pred.first_try_failed,
                                 admissible_from_state))
        if progress is not None:
            progress(min(start + batch_size, len(items)), len(items), {})
    return rows


def _compare(gold: dict, pred, failed_first: bool, admissible_from_state) -> dict:
    gold_reward = float(gold["reward"] or 0.0)
    return {
        "episode_id": gold["episode_id"], "t": gold["t"], "action": gold["action"],
        "state": gold["state"], "gold_next_state": gold["next_state"],
        "pred_next_state": pred.next_state, "gold_reward": gold_reward,
        "pred_reward": float(pred.reward), "gold_done": bool(gold["done"]),
        "pred_done": bool(pred.done), "gold_success": gold["success"],
        "pred_success": pred.success, "valid": bool(pred.valid), "first_try_failed": failed_first,
        "reward_ok": abs(float(pred.reward) - gold_reward) < 1e-6,
        "done_ok": bool(pred.done) == bool(gold["done"]),
        "success_ok": None if not gold["done"] else (bool(pred.success) == bool(gold["success"])),
        "exact": pred.next_state.strip() == gold["next_state"].strip(),
        "token_f1": token_f1(pred.next_state, gold["next_state"]),
        "admissible_f1": set_f1(admissible_from_state(pred.next_state),
                                admissible_from_state(gold["next_state"])),
        "reward_error": abs(float(pred.reward) - gold_reward),
    }


def _multi_step(env, episodes, batch_size: int) -> list[dict]:
    from dreamgym_cli.schema import Task

    out = []
    for start in range(0, len(episodes), batch_size):
        chunk = episodes[start:start + batch_size]
        tasks = [Task.from_row(t) for t, _, _ in chunk]
        env.reset_batch(tasks, exclude=[frozenset({episode["episode_id"]})
                                        for _, episode, _ in chunk])
        actions = [[s["action"] for s in steps] for _, _, steps in chunk]
        returns = [0.0] * len(chunk)
        for t in range(max(len(a) for a in actions)):
            step_actions = [None if env.is_done(i) else
                            (a[t] if t < len(a) else None) for i, a in enumerate(actions)]
            for i, a in enumerate(step_actions):  # real episode over but dream one is not
                if a is None and not env.is_done(i):
                    env.end_episode(i)
            results = env.step_batch(step_actions)
            for i, r in enumerate(results):
                if r is not None:
                    returns[i] += r.reward
        for i, (_, episode, steps) in enumerate(chunk):
            dream_steps = env.episode_steps(i)
            dream_success = bool(dream_steps and dream_steps[-1]["done"] and
                                 dream_steps[-1]["success"])
            out.append({"episode_id": episode["episode_id"], "real_success": bool(episode["success"]),
                        "dream_success": dream_success, "real_return": episode["return"],
                        "dream_return": returns[i], "real_length": len(steps),
                        "dream_length": len(dream_steps)})
    return out


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def summarize(rows: list[dict], multi: list[dict]) -> dict[str, Any]:
    n = len(rows)
    metrics = {
        "em/transitions": n,
        "em/reward_accuracy": _mean(r["reward_ok"] for r in rows),
        "em/done_accuracy": _mean(r["done_ok"] for r in rows),
        "em/success_accuracy": _mean(r["success_ok"] for r in rows),
        "em/next_state_exact": _mean(r["exact"] for r in rows),
        "em/next_state_token_f1": _mean(r["token_f1"] for r in rows),
        "em/admissible_f1": _mean(r["admissible_f1"] for r in rows),
        "em/parse_failure_rate": _mean(r["first_try_failed"] for r in rows),
        "em/invalid_rate": _mean(not r["valid"] for r in rows),
        "em/eps_R": _mean(r["reward_error"] for r in rows),
    }
    f1 = metrics["em/next_state_token_f1"]
    metrics["em/eps_P"] = None if f1 is None else round(1 - f1, 4)
    if multi:
        metrics["em/multistep_episodes"] = len(multi)
        metrics["em/multistep_success_agreement"] = _mean(
            m["real_success"] == m["dream_success"] for m in multi)
        metrics["em/multistep_real_success_rate"] = _mean(m["real_success"] for m in multi)
        metrics["em/multistep_dream_success_rate"] = _mean(m["dream_success"] for m in multi)
    return metrics


def _write_report(directory: Path, config: EvalEMConfig, metrics: dict, rows: list[dict],
                  multi: list[dict]) -> None:
    (directory / "fidelity.json").write_text(json.dumps({"metrics": metrics, "multistep": multi},
                                                        indent=2) + "\n")
    worst = sorted(rows, key=lambda r: (r["reward_ok"], r["done_ok"], r["token_f1"]))[:20]
    with open(directory / "examples.jsonl", "w") as f:
        for r in worst:
            f.write(json.dumps(r) + "\n")
    lines = [f"# Experience-model fidelity\n", f"Model: `{config.em}`  ",
             f"Held-out real episodes: `{config.episodes}`\n", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in metrics.items()]
    lines.append("\nε_R = mean |predicted reward − real reward|; ε_P = 1 − next-state token F1.\n")
    if worst:
        w = worst[0]
        lines += ["## Worst prediction", "", f"Action: `{w['action']}`", "", "Real next state:",
                  "```", w["gold_next_state"], "```", "Predicted next state:", "```",
                  w["pred_next_state"], "```",
                  f"Reward real {w['gold_reward']} vs predicted {w['pred_reward']}; done real "
                  f"{w['gold_done']} vs predicted {w['pred_done']}."]
    (directory / "report.md").write_text("\n".join(lines) + "\n")
    _plot(directory / "fidelity.png", metrics)


def _plot(path: Path, metrics: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["em/reward_accuracy", "em/done_accuracy", "em/success_accuracy",
            "em/next_state_exact", "em/next_state_token_f1", "em/admissible_f1",
            "em/multistep_success_agreement"]
    keys = [k for k in keys if metrics.get(k) is not None]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh([k.split("/")[1] for k in keys], [metrics[k] for k in keys], color="#4c72b0")
    ax.set_xlim(0, 1)
    ax.set_xlabel("held-out real transitions")
    ax.set_title("Experience-model fidelity")
    for i, k in enumerate(keys):
        ax.text(min(metrics[k] + 0.01, 0.93), i, f"{metrics[k]:.2f}", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(result: dict) -> None:
    from rich.table import Table

    from dreamgym_cli.ui import stdout as out

    table = Table(title=f"Experience-model fidelity ({result['out']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.items():
        if k.startswith("em/"):
            table.add_row(k, "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)))
    out.print(table)
