"""Write the report of DreamGym Table 1 or 2 (in miniature) from a `make table1` run directory.

    python pipelines/table1_report.py RUN_DIR --table 1|2 [--docs docs/results.md] [--command ...]

Reads table1.json (settings), seed<k>/<row>/{manifest.json,metrics.jsonl,generated_tasks.jsonl},
seed<k>/eval_<row>/results.json, fidelity/<variant>/ (held-out expert episodes) and
fidelity_sft/<variant>/ (the SFT policy's held-out rollouts). Writes RUN_DIR/REPORT_table<N>.md,
RUN_DIR/results_table<N>.json and the plots table<N>_*.png; with --docs also docs/results/
table<N>.{md,json,png} and rebuilds the results page from the sections found there, so one table's
run never erases the other's section.

Success is the mean over all (training seed, held-out game) pairs. The difference to SFT is paired
(same seed, same game) with a 95 % hierarchical bootstrap interval over seeds and games (stats.py).
A missing row, seed or file is shown as "—" with a note; a file that is not valid JSON stops the
report with its path and line (exit 2).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats import hierarchical_bootstrap, paired_difference, pair_mean, success_matrix  # noqa: E402

DASH = "—"
EM_VARIANTS = ("full", "no_retrieval", "no_reasoning")
# row directory -> (label, kind, start policies it was trained from, nearest first).
# kind: "sft" learns from the offline data; "real" does RL in the real env from SFT; "dream" does
# RL in an experience model trained on the offline data plus the SFT policy's own rollouts.
ROWS = {
    "sft": ("SFT on offline data", "sft", ()),
    "grpo_real": ("GRPO real env (B = {B} real)", "real", ("sft",)),
    "grpo_dream": ("GRPO DreamGym (0 real)", "dream", ("sft",)),
    "s2r": ("DreamGym-S2R (B_s2r = {B_s2r} real)", "dream", ("grpo_dream", "sft")),
    "ppo_real": ("PPO real env (B = {B} real)", "real", ("sft",)),
    "ppo_dream": ("PPO DreamGym (0 real)", "dream", ("sft",)),
    "dream_full": ("GRPO DreamGym full, Table 2 budget (0 real)", "dream", ("sft",)),
    "dream_no_retrieval": ("DreamGym w/o replay retrieval", "dream", ("sft",)),
    "dream_no_reasoning": ("DreamGym w/o reasoning", "dream", ("sft",)),
    "dream_no_taskgen": ("DreamGym w/o task generation", "dream", ("sft",)),
}
TABLES = {1: {"title": "Table 1: RL in the real env vs in DreamGym",
              "rows": ("sft", "grpo_real", "grpo_dream", "s2r"), "reference": ()},
          2: {"title": "Table 2: algorithms and ablations",
              "rows": ("sft", "grpo_real", "grpo_dream", "ppo_real", "ppo_dream", "dream_full",
                       "dream_no_retrieval", "dream_no_reasoning", "dream_no_taskgen"),
              "reference": ("sft", "grpo_real", "grpo_dream")}}
# Table 2's ablations are compared, paired, with the full DreamGym row of the same budget.
ABLATION_REFERENCE = "dream_full"
ABLATIONS = ("ppo_dream", "dream_no_retrieval", "dream_no_reasoning", "dream_no_taskgen")
FIDELITY_SETS = (("fidelity", "held-out expert episodes"),
                 ("fidelity_sft", "the SFT policy's held-out real rollouts"))
FIDELITY = [("transitions", "em/transitions", 0), ("reward accuracy", "em/reward_accuracy", 3),
            ("done accuracy", "em/done_accuracy", 3),
            ("next-state token F1", "em/next_state_token_f1", 3),
            ("parse failures", "em/parse_failure_rate", 3), ("ε_R", "em/eps_R", 3),
            ("ε_P", "em/eps_P", 3), ("multistep success agreement",
                                     "em/multistep_success_agreement", 3)]
PLOTS = ("curves_updates", "curves_real", "success_vs_real")


def color(key: str) -> str:
    """One colour per row in every plot."""
    return f"C{list(ROWS).index(key) % 10}"


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def load_json(path: Path) -> dict | None:
    """The JSON object in `path`, None when the file is absent; exit 2 when it is not valid."""
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        fail(f"{path}:{e.lineno}: not valid JSON ({e.msg})")
    if not isinstance(obj, dict):
        fail(f"{path}:1: expected a JSON object, got {type(obj).__name__}")
    return obj


def load_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                fail(f"{path}:{i}: not valid JSON ({e.msg})")
            if not isinstance(out[-1], dict):
                fail(f"{path}:{i}: expected a JSON object per line")
    return out


def per_game_success(path: Path, result: dict) -> dict[str, float]:
    """task_id -> success (a fraction when a game was played more than once)."""
    per_task = result.get("per_task") or []
    if not isinstance(per_task, list):
        fail(f"{path}: field per_task: expected a list, got {type(per_task).__name__}")
    out = {}
    for i, t in enumerate(per_task):
        rate = t.get("success_rate") if isinstance(t, dict) else None
        if not isinstance(rate, (int, float)) or "task_id" not in t:
            fail(f"{path}: per_task[{i}]: expected task_id and a numeric success_rate")
        out[str(t["task_id"])] = float(rate)
    return out


def seconds(manifest: dict | None) -> float | None:
    try:
        start = datetime.fromisoformat(manifest["started_at"])
        return (datetime.fromisoformat(manifest["finished_at"]) - start).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def fmt(value, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return DASH
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return text.replace("-", "−")


def seed_dirs(run: Path) -> list[tuple[int, Path]]:
    return sorted((int(m.group(1)), p) for p in run.iterdir()
                  if p.is_dir() and (m := re.fullmatch(r"seed(\d+)", p.name)))


def metric(manifest: dict | None, curve: list[dict], key: str):
    """A count from the manifest's metrics, else from the last metrics.jsonl line that has it."""
    value = ((manifest or {}).get("metrics") or {}).get(key)
    if value is None:
        value = next((m[key] for m in reversed(curve) if m.get(key) is not None), None)
    return value


def load_row(run: Path, seeds: list[tuple[int, Path]], key: str) -> dict:
    """Everything one row left on disk, per seed; notes for what is missing."""
    row = {"key": key, "games": {}, "manifest": {}, "curve": {}, "invalid": {}, "notes": []}
    for k, path in seeds:
        results_path = path / f"eval_{key}" / "results.json"
        result = load_json(results_path)
        manifest = load_json(path / key / "manifest.json")
        row["manifest"][k] = manifest
        row["curve"][k] = load_jsonl(path / key / "metrics.jsonl")
        if result is None:
            row["notes"].append(f"`seed{k}/eval_{key}/results.json`")
        else:
            row["invalid"][k] = result.get("invalid_action_rate")
            games = per_game_success(results_path, result)
            if games:
                row["games"][k] = games
            else:
                row["notes"].append(f"`seed{k}/eval_{key}/results.json` has no per_task results")
        if manifest is None:
            row["notes"].append(f"`seed{k}/{key}/manifest.json`")
    row["absent"] = bool(seeds) and not row["invalid"] and not any(row["manifest"].values())
    if row["absent"]:
        row["notes"] = [f"not run: no `seed<k>/{key}/manifest.json` nor "
                        f"`seed<k>/eval_{key}/results.json` for any seed"]
    return row


def number(settings: dict, key: str) -> float | None:
    """A numeric setting; None when an older run did not record it."""
    value = settings.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summarize(key: str, loaded: dict[str, dict], settings: dict) -> dict:
    """The numbers of one row: success, paired difference to SFT, cost."""
    label, kind, starts = ROWS[key]
    row = loaded[key]
    seeds = sorted(row["manifest"])
    names = {"B": settings.get("B", DASH), "B_s2r": settings.get("B_s2r", DASH)}
    budgets = [((m or {}).get("config") or {}).get("max_real_steps")
               for m in row["manifest"].values()]
    budget = next((b for b in budgets if b is not None), None)
    if budget is not None:  # the row's own budget (Table 2's rows run fewer iterations)
        names = {"B": budget, "B_s2r": budget}
    out = {"row": key, "label": label.format(**names), "notes": row["notes"]}
    matrix = success_matrix(row["games"], sorted(row["games"]),
                            sorted({g for games in row["games"].values() for g in games}))
    out["success"], out["success_ci"] = pair_mean(matrix), hierarchical_bootstrap(matrix)
    diff, pair_seeds, pair_games = paired_difference(row["games"], loaded["sft"]["games"])
    ci = hierarchical_bootstrap(diff)
    out.update(diff_vs_sft=pair_mean(diff), ci_low=ci[0] if ci else None,
               ci_high=ci[1] if ci else None, games=len(pair_games), seeds=len(pair_seeds),
               pairs=int((~np.isnan(diff)).sum()))

    offline = None if row["absent"] else number(settings, "offline_real_transitions")
    if kind == "dream":
        extra = number(settings, "em_policy_transitions")
        offline = offline + extra if offline is not None and extra is not None else None
    online, updates, own_s, total_s = [], [], [], []
    for k in seeds:
        chain = [key, *starts]
        manifests = [loaded[r]["manifest"].get(k) for r in chain]
        used = [0 if r == "sft" else metric(m, loaded[r]["curve"].get(k, []), "real_steps_used")
                for r, m in zip(chain, manifests)]
        online.append(sum(used) if None not in used else None)
        # optimizer steps: RL runs log train/updates, the SFT manifest has steps
        steps = metric(manifests[0], row["curve"][k], "train/updates")
        if steps is None and kind == "sft" and manifests[0] is not None:
            steps = metric(manifests[0], [], "steps")
        updates.append(steps)
        times = [seconds(m) for m in manifests]
        own_s.append(times[0])
        total_s.append(sum(times) if None not in times else None)
    out["real_transitions_offline"] = offline
    out["real_transitions_online"] = mean(online)
    out["real_transitions"] = (offline + out["real_transitions_online"]
                               if offline is not None and out["real_transitions_online"]
                               is not None else None)
    out["online_per_seed"] = online
    out["updates"], out["seconds"] = mean(updates), mean(own_s)
    out["seconds_cumulative"] = mean(total_s)
    out["invalid_action_rate"] = mean(row["invalid"].values())
    out["iterations"] = mean([metric(row["manifest"][k], row["curve"][k], "iterations_run")
                              for k in seeds]) if key != "sft" else None
    return out


# ---- markdown ---------------------------------------------------------------------------------

def pairs_cell(r: dict) -> str:
    return f"{r['games']} × {r['seeds']}" if r["games"] else DASH


def table_lines(rows: list[dict], reference: tuple[str, ...]) -> list[str]:
    lines = ["| row | success | Δ vs SFT [95 % CI] | games × seeds | real offline | real online "
             "| real total | policy updates | train s (row) | train s (with start) "
             "| invalid actions |", "|---" * 11 + "|"]
    for r in rows:
        label = r["label"] + (" (reference)" if r["row"] in reference else "")
        diff = "baseline" if r["row"] == "sft" and r["games"] else DASH \
            if r["diff_vs_sft"] is None else (
            f"{fmt(r['diff_vs_sft'], sign=True)} [{fmt(r['ci_low'], sign=True)}, "
            f"{fmt(r['ci_high'], sign=True)}]")
        lines.append(
            f"| {label} | {fmt(r['success'])} | {diff} | {pairs_cell(r)} | "
            f"{fmt(r['real_transitions_offline'], 0)} | {fmt(r['real_transitions_online'], 0)} | "
            f"{fmt(r['real_transitions'], 0)} | {fmt(r['updates'], 0)} | {fmt(r['seconds'], 0)} | "
            f"{fmt(r['seconds_cumulative'], 0)} | {fmt(r['invalid_action_rate'])} |")
    lines += ["", "Success: mean over all (training seed, held-out game) pairs of the row. Δ vs "
              "SFT: mean of success(row) − success(SFT) over the pairs both rows have "
              "(same seed, same game), with a 95 % percentile interval from a hierarchical "
              "bootstrap (10,000 replicates; each draws seeds and games with replacement, the "
              "same games for every seed). Real offline: transitions of the offline data (dream rows add the SFT "
              "policy's rollouts the experience model learned from); online: real transitions of "
              "RL, mean over seeds (S2R includes its DreamGym start). Updates: optimizer steps of "
              "the row itself. Train s (with start): the row plus the policies it started from "
              "(the experience models' training is shared and not counted)."]
    notes = [f"- {r['label']}: {n}" for r in rows for n in r["notes"]]
    if notes:
        lines += ["", f"Missing ({DASH}):", "", *notes]
    return lines


def ablation_rows(loaded: dict[str, dict]) -> list[dict]:
    """Each ablation's paired difference to the full DreamGym row of the same budget."""
    reference = loaded.get(ABLATION_REFERENCE)
    out = []
    for key in ABLATIONS:
        if key not in loaded or reference is None:
            continue
        diff, seeds, games = paired_difference(loaded[key]["games"], reference["games"])
        ci = hierarchical_bootstrap(diff)
        out.append({"row": key, "label": ROWS[key][0], "diff": pair_mean(diff),
                    "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
                    "games": len(games), "seeds": len(seeds)})
    return out


def ablation_lines(ablations: list[dict]) -> list[str]:
    lines = [f"| row | Δ vs {ROWS[ABLATION_REFERENCE][0]} [95 % CI] | games × seeds |",
             "|---|---|---|"]
    for a in ablations:
        diff = DASH if a["diff"] is None else (f"{fmt(a['diff'], sign=True)} "
                                              f"[{fmt(a['ci_low'], sign=True)}, "
                                              f"{fmt(a['ci_high'], sign=True)}]")
        lines.append(f"| {a['label']} | {diff} | {pairs_cell(a)} |")
    return lines + ["", "Paired as Δ vs SFT is (same seed, same game), at equal policy updates: "
                        "every row here ran the same iterations from the same SFT policy."]


def targets(rows: dict[str, dict], fidelity_sft: dict) -> list[tuple[str, bool | None, str]]:
    """(target, met or None when it cannot be measured, measured value)."""
    def ci_above_zero(key):
        r = rows.get(key)
        if not r or r["ci_low"] is None:
            return None, f"{DASH} (no paired results)"
        return r["ci_low"] > 0, (f"Δ {fmt(r['diff_vs_sft'], 3, True)} "
                                 f"[{fmt(r['ci_low'], 3, True)}, {fmt(r['ci_high'], 3, True)}]")

    def at_least(key, other, margin):
        a, b = rows.get(key, {}).get("success"), rows.get(other, {}).get("success")
        if a is None or b is None:
            return None, f"{fmt(a, 3)} vs {fmt(b, 3)}"
        return a >= b - margin, f"{fmt(a, 3)} vs {fmt(b, 3)}"

    out = [("GRPO real − SFT: 95 % CI above 0", *ci_above_zero("grpo_real"))]
    met, value = ci_above_zero("grpo_dream")
    online = (rows.get("grpo_dream") or {}).get("online_per_seed") or []
    if met is not None:
        known = [v for v in online if v is not None]
        zero = bool(known) and all(v == 0 for v in known)
        met = met and zero
        value += f"; online real transitions per seed {online}"
    out.append(("GRPO DreamGym − SFT: 95 % CI above 0, with 0 real transitions in RL", met,
                value))
    out.append(("GRPO DreamGym ≥ GRPO real − 0.03 (means)", *at_least("grpo_dream", "grpo_real",
                                                                       0.03)))
    out.append(("DreamGym-S2R ≥ GRPO real (means)", *at_least("s2r", "grpo_real", 0.0)))
    full = ((fidelity_sft.get("full") or {}).get("metrics") or {})
    for name, key, bound in (("reward", "em/reward_accuracy", 0.90),
                             ("done", "em/done_accuracy", 0.95)):
        value = full.get(key)
        out.append((f"Experience model (full) {name} accuracy ≥ {bound:.2f} on the SFT policy's "
                    "held-out transitions", None if value is None else value >= bound,
                    fmt(value, 3)))
    return out


def target_lines(checks: list[tuple[str, bool | None, str]]) -> list[str]:
    word = {True: "met", False: "**NOT met**", None: f"{DASH} (cannot be measured)"}
    return [f"- {word[met]}: {text} — measured {value}" for text, met, value in checks]


def fidelity_lines(fidelity: dict[str, dict], folder: str) -> list[str]:
    lines = ["| metric | " + " | ".join(EM_VARIANTS) + " |", "|---" * (len(EM_VARIANTS) + 1) + "|"]
    for label, key, digits in FIDELITY:
        cells = [fmt(((fidelity.get(v) or {}).get("metrics") or {}).get(key), digits)
                 for v in EM_VARIANTS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    absent = [v for v in EM_VARIANTS if not fidelity.get(v)]
    if absent:
        lines.append(f"\nMissing ({DASH}): " + ", ".join(f"`{folder}/{v}/fidelity.json`"
                                                         for v in absent) + ".")
    return lines


def wrong_examples(path: Path, limit: int = 4, min_f1: float = 0.5) -> list[str]:
    def is_wrong(e: dict) -> bool:
        reward_ok = e.get("reward_ok", e.get("gold_reward") == e.get("pred_reward"))
        done_ok = e.get("done_ok", e.get("gold_done") == e.get("pred_done"))
        return not reward_ok or not done_ok or (e.get("token_f1") or 0.0) < min_f1

    picked = [e for e in load_jsonl(path) if is_wrong(e)][:limit]
    if not picked:
        return [f"No wrong predictions in `{path.parent.parent.name}/{path.parent.name}/"
                f"{path.name}`." if path.is_file() else
                f"{DASH} (`{path.parent.parent.name}/{path.parent.name}/{path.name}` missing)."]
    lines = []
    for n, e in enumerate(picked, start=1):
        where = f"episode {e.get('episode_id')}, t={e.get('t')}"
        lines += [f"#### {n}. `{e.get('action')}` ({where})\n",
                  f"reward gold {e.get('gold_reward')} vs predicted {e.get('pred_reward')}; done "
                  f"gold {e.get('gold_done')} vs predicted {e.get('pred_done')}; next-state token "
                  f"F1 {fmt(e.get('token_f1'))}\n"]
        for side, name in (("gold", "gold"), ("pred", "predicted")):
            text = str(e.get(f"{side}_next_state", ""))
            text = text[:400] + (" …" if len(text) > 400 else "")
            lines += [f"{name} next state:\n", "```text", text.replace("```", "'''"), "```\n"]
    return lines


def curriculum_lines(loaded: dict[str, dict], seeds: list[tuple[int, Path]]) -> list[str]:
    def share(key, k, name):
        return mean([m.get(name) for m in loaded[key]["curve"].get(k, [])])

    # "on" is the full DreamGym row of the same budget as the ablation when there is one
    on_key = ABLATION_REFERENCE if any((loaded.get(ABLATION_REFERENCE) or {}).get(
        "curve", {}).values()) else "grpo_dream"
    lines = [f"| seed | zero-variance share, curriculum on ({on_key}) | off (dream_no_taskgen) "
             "| on − off | generated tasks solved in their group | generated tasks |",
             "|---|---|---|---|---|---|"]
    diffs, solved = [], []
    examples = []
    for k, path in seeds:
        on, off = (share(on_key, k, "curriculum/zero_variance_share"),
                   share("dream_no_taskgen", k, "curriculum/zero_variance_share"))
        diff = on - off if on is not None and off is not None else None
        diffs.append(diff)
        solved.append(share(on_key, k, "curriculum/generated_solved_share"))
        made = load_jsonl(path / on_key / "generated_tasks.jsonl")
        have_file = (path / on_key / "generated_tasks.jsonl").is_file()
        lines.append(f"| {k} | {fmt(on, 3)} | {fmt(off, 3)} | {fmt(diff, 3, True)} | "
                     f"{fmt(solved[-1], 3)} | {len(made) if have_file else DASH} |")
        curriculum = (loaded[on_key]["manifest"].get(k) or {}).get("curriculum") or {}
        shown = curriculum.get("examples") or [
            {"iteration": t.get("generation"), "instruction": t.get("instruction"),
             "parent": t.get("parent_id")} for t in made]
        examples += [(k, e) for e in shown]
    lines.append(f"| mean | {DASH} | {DASH} | {fmt(mean(diffs), 3, True)} | "
                 f"{fmt(mean(solved), 3)} | |")
    lines += ["", "Zero-variance share: the share of a training batch's task groups whose rewards "
              "were all equal (no GRPO signal); the curriculum should lower it. Generated tasks "
              "solved: the share of generated tasks drawn in an iteration that the group solved "
              "at least once.", "", f"Generated tasks ({on_key}):", ""]
    if not examples:
        lines.append(f"{DASH} (none in `seed<k>/{on_key}/generated_tasks.jsonl` or the "
                     "manifests).")
    for k, e in examples[:6]:
        lines.append(f"- seed{k}, iteration {e.get('iteration')}: \"{e.get('instruction')}\" "
                     f"(from \"{e.get('parent')}\")")
    return lines


# ---- plots -----------------------------------------------------------------------------------

def curve_points(curve: list[dict], y_key: str, x_key: str, x_offset: float) -> list[tuple]:
    """(iteration, x, y) of the metrics.jsonl lines that have y_key; iteration 0 is at x = 0."""
    points = []
    for i, m in enumerate(curve, start=1):
        iteration = m.get("iteration", i)
        if m.get(y_key) is None:
            continue
        x = m.get(x_key, 0 if iteration == 0 else None)
        if x is not None:
            points.append((iteration, x + x_offset, m[y_key]))
    return points


def plot_curves(rows: list[dict], loaded: dict, x_key: str, xlabel: str, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    panels = (("rollout/success_rate", "training success (sampled, training env)"),
              ("eval/success_rate", "greedy success on validation games (real env)"))
    for ax, (y_key, title) in zip(axes, panels):
        for r in rows:
            offset = (r["real_transitions_offline"] or 0) if x_key == "real_steps_used" else 0
            by_iteration: dict[int, list[tuple]] = {}
            for curve in loaded[r["row"]]["curve"].values():
                points = curve_points(curve, y_key, x_key, offset)
                if points:
                    ax.plot([p[1] for p in points], [p[2] for p in points], color=color(r["row"]),
                            lw=0.6, alpha=0.35)
                for it, x, y in points:
                    by_iteration.setdefault(it, []).append((x, y))
            if by_iteration:
                its = sorted(by_iteration)
                ax.plot([mean(x for x, _ in by_iteration[i]) for i in its],
                        [mean(y for _, y in by_iteration[i]) for i in its], color=color(r["row"]),
                        marker="o", ms=3, lw=1.8, label=r["row"])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.05, 1.05)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("success (mean over seeds; thin: one seed)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_scatter(rows: list[dict], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in rows:
        x = r["real_transitions"]
        if x is None:
            x = r["real_transitions_online"]
        if r["success"] is None or x is None:
            continue
        low, high = r["success_ci"] or (r["success"], r["success"])
        ax.errorbar([x], [r["success"]], yerr=[[r["success"] - low], [high - r["success"]]],
                    fmt="o", capsize=4, color=color(r["row"]), label=r["row"])
        ax.annotate(r["row"], (x, r["success"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)
    ax.set_xlabel("real transitions, offline + online (online only where offline is unknown)")
    ax.set_ylabel("success on held-out real games")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("mean over (seed, game) pairs, 95 % hierarchical bootstrap", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# ---- the section, the report, the docs page ----------------------------------------------------

def section_lines(table: int, command: str, date: str, settings: dict, seeds: list,
                  rows: list[dict], checks: list, fidelity: dict, loaded: dict,
                  image_dir: str, full: bool, ablations: list[dict] = ()) -> list[str]:
    """The section of one table. `full` (the run's REPORT) has every part; on the results page
    the fidelity tables go with Table 1 and the curriculum with Table 2 (the ablation without
    task generation), so the page holds each once."""
    spec = TABLES[table]
    lines = [f"## {spec['title']}\n", f"Command: `{command}`  ", f"Date: {date}  ",
             f"Training seeds: {', '.join(str(k) for k, _ in seeds) or DASH}\n"]
    if settings:
        lines += ["<details><summary>settings (table1.json)</summary>\n", "| setting | value |",
                  "|---|---|"]
        lines += [f"| {k} | {v if isinstance(v, (str, int, float)) else json.dumps(v)} |"
                  for k, v in settings.items()]
        lines += ["\n</details>\n"]
    else:
        lines.append(f"Settings: {DASH} (no `table1.json` in the run directory)\n")
    lines += table_lines(rows, spec["reference"])
    if table == 1:
        lines += ["\n### Targets\n", *target_lines(checks)]
    if ablations:
        lines += ["\n### Ablations against the full DreamGym row of the same budget\n",
                  *ablation_lines(ablations)]
    if full or table == 1:
        for folder, what in FIDELITY_SETS:
            lines += [f"\n### Experience-model fidelity on {what}\n",
                      *fidelity_lines(fidelity[folder], folder)]
    else:
        lines.append("\nExperience-model fidelity of the three variants: see Table 1's section.")
    prefix = f"{image_dir}/" if image_dir else ""
    lines += ["\n### Plots\n", *[f"![table{table} {p}]({prefix}table{table}_{p}.png)"
                                 for p in PLOTS]]
    if full or table == 2:
        lines += ["\n### Curriculum\n", *curriculum_lines(loaded, seeds)]
    return lines


def results_page(sections: Path) -> list[str]:
    page = ["# Results: DreamGym Tables 1 and 2 in miniature (TextWorld)\n",
            "Each section is written by its own run (`make table1`, `make table2`) with "
            "`pipelines/table1_report.py`; its command and date are at its top.\n"]
    for table in TABLES:
        path = sections / f"table{table}.md"
        page += [path.read_text().rstrip("\n") if path.is_file() else
                 f"## {TABLES[table]['title']}\n\n{DASH} (not run yet: `make table{table}`)", ""]
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory written by `make table1`")
    parser.add_argument("--table", type=int, choices=sorted(TABLES), default=1,
                        help="which table to report (1: real vs DreamGym, 2: PPO and ablations)")
    parser.add_argument("--docs", type=Path, help="also write this results page (docs/results.md)")
    parser.add_argument("--command", help="the command that produced the run, for the header")
    args = parser.parse_args(argv)
    run, table = args.run, args.table
    if not run.is_dir():
        fail(f"{run}: no such run directory")
    import matplotlib

    matplotlib.use("Agg")
    command = args.command or " ".join(["python", "pipelines/table1_report.py", *sys.argv[1:]])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    settings = load_json(run / "table1.json") or {}
    fidelity = {folder: {v: load_json(run / folder / v / "fidelity.json") for v in EM_VARIANTS}
                for folder, _ in FIDELITY_SETS}
    seeds = seed_dirs(run)
    needed = {"sft", "grpo_dream", "dream_no_taskgen", *TABLES[table]["rows"]}
    if table == 2:
        needed |= {ABLATION_REFERENCE, *ABLATIONS}
    needed |= {s for key in list(needed) for s in ROWS[key][2]}
    loaded = {key: load_row(run, seeds, key) for key in ROWS if key in needed}
    rows = [summarize(key, loaded, settings) for key in TABLES[table]["rows"]]
    ablations = ablation_rows(loaded) if table == 2 else []
    if not seeds:
        rows[0]["notes"].insert(0, "all rows: no `seed<k>/` directories")
    checks = targets({r["row"]: r for r in rows}, fidelity["fidelity_sft"])

    rl_rows = [r for r in rows if r["row"] != "sft"]
    plot_curves(rl_rows, loaded, "train/updates", "policy updates (optimizer steps)",
                run / f"table{table}_curves_updates.png")
    plot_curves(rl_rows, loaded, "real_steps_used",
                "real transitions (offline + online; offline as 0 where unknown)",
                run / f"table{table}_curves_real.png")
    plot_scatter(rows, run / f"table{table}_success_vs_real.png")

    record = {"command": command, "date": date, "settings": settings, "table": table,
              "rows": [{k: v for k, v in r.items() if k not in ("notes", "online_per_seed")}
                       for r in rows],
              "targets": [{"target": t, "met": m, "measured": v} for t, m, v in checks]
              if table == 1 else [],
              "ablations_vs_full": ablations}
    for r in record["rows"]:
        r["success_ci"] = list(r["success_ci"]) if r["success_ci"] else None
    section = section_lines(table, command, date, settings, seeds, rows, checks, fidelity,
                            loaded, "", full=True, ablations=ablations)
    examples = []
    for folder, what in FIDELITY_SETS:
        examples += [f"\n### Where the experience model (full) is wrong on {what}\n",
                     *wrong_examples(run / folder / "full" / "examples.jsonl")]
    report = [f"# DreamGym {TABLES[table]['title']} (miniature)\n",
              f"Run directory: `{run}`\n", *section, *examples]
    (run / f"REPORT_table{table}.md").write_text("\n".join(report) + "\n")
    (run / f"results_table{table}.json").write_text(json.dumps(record, indent=1) + "\n")
    print("\n".join(table_lines(rows, TABLES[table]["reference"])))
    if table == 1:
        print("\n".join(["", "Targets:", *target_lines(checks)]))
    if ablations:
        print("\n".join(["", *ablation_lines(ablations)]))
    print(f"\nwrote {run / f'REPORT_table{table}.md'}")
    if args.docs:
        images = args.docs.with_suffix("")
        images.mkdir(parents=True, exist_ok=True)
        for p in PLOTS:
            shutil.copyfile(run / f"table{table}_{p}.png", images / f"table{table}_{p}.png")
        (images / f"table{table}.json").write_text(json.dumps(record, indent=1) + "\n")
        docs_section = section_lines(table, command, date, settings, seeds, rows, checks,
                                     fidelity, loaded, images.name, full=False,
                                     ablations=ablations)
        (images / f"table{table}.md").write_text("\n".join(docs_section) + "\n")
        args.docs.write_text("\n".join(results_page(images)) + "\n")
        print(f"wrote {args.docs} and {images}/table{table}.{{md,json}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
