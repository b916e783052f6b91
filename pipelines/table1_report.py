"""Write REPORT.md (+ PNGs) for a `make table1` run directory: DreamGym Table 1/2 in miniature.

    python pipelines/table1_report.py RUN_DIR [--docs docs/results.md] [--command "make table1"]

Reads em/<variant>/, fidelity/<variant>/{fidelity.json,examples.jsonl}, seed<k>/<row>/ (manifest,
metrics.jsonl) and seed<k>/eval_<row>/results.json. A row or seed without its files is shown as
"—" with a note. Success is the mean over training seeds ± the half-width of a 95 % Student t
interval (n-1 degrees of freedom).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

DASH = "—"
EM_VARIANTS = ("full", "no_retrieval", "no_reasoning")
# (row directory, label, experience-model variant it trains in or None for the real env)
ROWS = [("sft", "SFT on offline data", None),
        ("grpo_real", "GRPO real env ({B} real transitions)", None),
        ("grpo_dream", "GRPO DreamGym (0 real)", "full"),
        ("s2r", "DreamGym-S2R ({B16} real)", "full"),
        ("ppo_real", "PPO real env", None),
        ("ppo_dream", "PPO DreamGym", "full"),
        ("dream_no_retrieval", "DreamGym w/o replay retrieval (Table 2)", "no_retrieval"),
        ("dream_no_reasoning", "DreamGym w/o reasoning (Table 2)", "no_reasoning"),
        ("dream_no_taskgen", "DreamGym w/o task generation (Table 2)", "full")]
FIDELITY = [("reward accuracy", "em/reward_accuracy"), ("done accuracy", "em/done_accuracy"),
            ("next-state token F1", "em/next_state_token_f1"),
            ("parse failures", "em/parse_failure_rate"), ("ε_R", "em/eps_R"), ("ε_P", "em/eps_P"),
            ("multistep success agreement", "em/multistep_success_agreement")]
PLOTS = ("success_vs_real.png", "success_vs_time.png", "curves.png")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def load_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        fail(f"{path}:{e.lineno}: not valid JSON ({e.msg})")


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
    return out


def seconds(manifest: dict | None) -> float | None:
    try:
        start = datetime.fromisoformat(manifest["started_at"])
        return (datetime.fromisoformat(manifest["finished_at"]) - start).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def t_half_width(values: list[float]) -> float:
    """Half-width of the 95 % Student t interval of the mean (0 for a single value)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return 0.0
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def fmt(value, digits: int = 2) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def seed_dirs(run: Path) -> list[tuple[int, Path]]:
    return sorted((int(m.group(1)), p) for p in run.iterdir()
                  if p.is_dir() and (m := re.fullmatch(r"seed(\d+)", p.name)))


def collect_rows(run: Path, seeds: list[tuple[int, Path]], settings: dict,
                 fidelity: dict) -> tuple[list[dict], list[str]]:
    budget = settings.get("B")
    names = {"B": budget if budget is not None else "B",
             "B16": f"B/16 = {budget // 16}" if isinstance(budget, int) else "B/16"}
    rows, missing = [], []
    for key, label, em in ROWS:
        row = {"key": key, "label": label.format(**names), "em": em, "per_seed": [],
               "real": [], "updates": [], "seconds": [], "invalid": [], "curves": []}
        for k, path in seeds:
            result = load_json(path / f"eval_{key}" / "results.json")
            manifest = load_json(path / key / "manifest.json")
            missing += [f"{row['label']}: `seed{k}/{name}`" for name, obj in
                        ((f"eval_{key}/results.json", result), (f"{key}/manifest.json", manifest))
                        if obj is None]
            row["per_seed"].append((result or {}).get("success_rate"))
            row["invalid"].append((result or {}).get("invalid_action_rate"))
            metrics = (manifest or {}).get("metrics", {})
            row["real"].append(0 if key == "sft" and manifest else metrics.get("real_steps_used"))
            row["updates"].append(metrics.get("iterations_run"))
            row["seconds"].append(seconds(manifest))
            row["curves"].append(load_jsonl(path / key / "metrics.jsonl"))
        done = [v for v in row["per_seed"] if v is not None]
        row["n"], row["success"], row["ci"] = len(done), mean(done), t_half_width(done)
        eps = (fidelity.get(em) or {}).get("metrics", {}) if em else {}
        row["eps_R"], row["eps_P"] = eps.get("em/eps_R"), eps.get("em/eps_P")
        rows.append(row)
    return rows, missing


def success_cell(row: dict) -> str:
    if row["n"] == 0:
        return DASH
    if row["n"] == 1:
        return f"{row['success']:.2f} (n=1)"
    return f"{row['success']:.2f} ± {row['ci']:.2f}"


def table1_lines(rows: list[dict], fidelity: dict, missing: list[str]) -> list[str]:
    lines = ["| row | success (mean ± 95 % CI) | per seed | real transitions | policy updates "
             "| train s | invalid actions | ε_R (EM) | ε_P (EM) |", "|---" * 9 + "|"]
    for r in rows:
        per_seed = " / ".join(fmt(v) for v in r["per_seed"]) or DASH
        lines.append(f"| {r['label']} | {success_cell(r)} | {per_seed} | {fmt(mean(r['real']), 0)}"
                     f" | {fmt(mean(r['updates']), 0)} | {fmt(mean(r['seconds']), 0)} | "
                     f"{fmt(mean(r['invalid']))} | {fmt(r['eps_R'])} | {fmt(r['eps_P'])} |")
    eps = [f"{v}: ε_R = {fmt(f['metrics'].get('em/eps_R'))}, ε_P = "
           f"{fmt(f['metrics'].get('em/eps_P'))}" for v, f in fidelity.items() if f]
    lines.append("\nExperience-model errors on held-out real transitions: "
                 + ("; ".join(eps) if eps else f"{DASH} (no fidelity/ results)") + ".")
    lines.append("Per-seed values are in seed order; real transitions, updates, train seconds and "
                 "invalid actions are means over the seeds that have them. S2R counts only its "
                 "own real transitions and time (it starts from GRPO DreamGym of the same seed).")
    if missing:
        lines += [f"\nMissing ({DASH}):\n", *[f"- {m}" for m in missing]]
    return lines


def fidelity_lines(fidelity: dict) -> list[str]:
    lines = ["| metric | " + " | ".join(EM_VARIANTS) + " |", "|---" * (len(EM_VARIANTS) + 1) + "|"]
    for label, key in FIDELITY:
        cells = [fmt((fidelity.get(v) or {}).get("metrics", {}).get(key), 3) for v in EM_VARIANTS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    absent = [v for v in EM_VARIANTS if not fidelity.get(v)]
    if absent:
        lines.append(f"\nMissing ({DASH}): " + ", ".join(f"`fidelity/{v}/fidelity.json`"
                                                         for v in absent) + ".")
    return lines


def plot_scatter(rows: list[dict], field: str, xlabel: str, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in rows:
        x = mean(r[field])
        if r["n"] and x is not None:
            ax.errorbar([x], [r["success"]], yerr=[r["ci"]], fmt="o", capsize=4, label=r["key"])
            ax.annotate(r["key"], (x, r["success"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("success on held-out real games")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("mean over seeds, 95 % t interval")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_curves(rows: list[dict], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in rows:
        by_iteration: dict[int, list[float]] = {}
        for lines in r["curves"]:
            for i, m in enumerate(lines, start=1):
                if "rollout/success_rate" in m:
                    by_iteration.setdefault(m.get("iteration", i), []).append(
                        m["rollout/success_rate"])
        if by_iteration:
            its = sorted(by_iteration)
            ax.plot(its, [mean(by_iteration[i]) for i in its], marker="o", label=r["key"])
    ax.set_xlabel("iteration")
    ax.set_ylabel("rollout/success_rate (training env)")
    ax.set_title("learning curves, mean over seeds")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def wrong_examples(path: Path, limit: int = 5, min_f1: float = 0.5) -> list[str]:
    def is_wrong(e: dict) -> bool:
        reward_ok = e.get("reward_ok", e.get("gold_reward") == e.get("pred_reward"))
        done_ok = e.get("done_ok", e.get("gold_done") == e.get("pred_done"))
        return not reward_ok or not done_ok or (e.get("token_f1") or 0.0) < min_f1

    picked = [e for e in load_jsonl(path) if is_wrong(e)][:limit]
    if not picked:
        return [f"No wrong predictions in `{path.name}`." if path.is_file()
                else f"{DASH} (`fidelity/full/examples.jsonl` missing)."]
    lines = []
    for n, e in enumerate(picked, start=1):
        lines += [f"### {n}. `{e.get('action')}` (episode {e.get('episode_id')}, t={e.get('t')})\n",
                  f"reward gold {e.get('gold_reward')} vs predicted {e.get('pred_reward')}; done "
                  f"gold {e.get('gold_done')} vs predicted {e.get('pred_done')}; next-state token "
                  f"F1 {fmt(e.get('token_f1'))}\n"]
        for side in ("gold", "pred"):
            text = str(e.get(f"{side}_next_state", ""))
            text = text[:400] + (" …" if len(text) > 400 else "")
            lines += [f"{'gold' if side == 'gold' else 'predicted'} next state:\n",
                      "```text", text.replace("```", "'''"), "```\n"]
    return lines


def curriculum_lines(rows: list[dict], seeds: list[tuple[int, Path]]) -> list[str]:
    lines = ["| row | curriculum | mean curriculum/zero_variance_share |", "|---|---|---|"]
    for r in rows:
        if r["key"] in ("grpo_dream", "dream_no_taskgen"):
            share = mean([m.get("curriculum/zero_variance_share") for c in r["curves"] for m in c])
            state = "on" if r["key"] == "grpo_dream" else "off"
            lines.append(f"| {r['label']} | {state} | {fmt(share, 3)} |")
    examples = []
    for k, path in seeds:
        manifest = load_json(path / "grpo_dream" / "manifest.json") or {}
        examples += [(k, e) for e in (manifest.get("curriculum") or {}).get("examples", [])]
    lines.append("\nGenerated tasks (GRPO DreamGym):\n")
    if not examples:
        lines.append("None recorded in the `grpo_dream` manifests.")
    for k, e in examples[:5]:
        lines.append(f"- seed{k}, iteration {e.get('iteration')}: \"{e.get('instruction')}\" "
                     f"(from \"{e.get('parent')}\")")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory written by `make table1`")
    parser.add_argument("--docs", type=Path, help="also write this results page (docs/results.md)")
    parser.add_argument("--command", help="the command that produced the run, for the header")
    args = parser.parse_args(argv)
    run = args.run
    if not run.is_dir():
        fail(f"{run}: no such run directory")
    import matplotlib

    matplotlib.use("Agg")
    command = args.command or " ".join(["python", "pipelines/table1_report.py", *sys.argv[1:]])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    settings = load_json(run / "table1.json") or {}
    fidelity = {v: load_json(run / "fidelity" / v / "fidelity.json") for v in EM_VARIANTS}
    seeds = seed_dirs(run)
    rows, missing = collect_rows(run, seeds, settings, fidelity)
    if not seeds:
        missing.insert(0, "all rows: no `seed<k>/` directories")
    plot_scatter(rows, "real", "real transitions used in training (mean)",
                 run / "success_vs_real.png")
    plot_scatter(rows, "seconds", "training wall-clock s (mean)", run / "success_vs_time.png")
    plot_curves([r for r in rows if r["key"] != "sft"], run / "curves.png")
    header = [f"Command: `{command}`  ", f"Date: {date}  ",
              f"Seeds: {', '.join(str(k) for k, _ in seeds) or DASH}\n"]
    if settings:
        header += ["| setting | value |", "|---|---|"]
        header += [f"| {k} | {v if isinstance(v, (str, int, float)) else json.dumps(v)} |"
                   for k, v in settings.items()]
    table1 = ["## Table 1: success on held-out real games\n",
              *table1_lines(rows, fidelity, missing)]
    fid = ["\n## Experience-model fidelity (held-out real transitions)\n",
           *fidelity_lines(fidelity)]
    report = ["# DreamGym Table 1 in miniature (TextWorld)\n", f"Run directory: `{run}`  ",
              *header, "", *table1, *fid, "\n## Plots\n",
              *[f"![{p[:-4]}]({p})" for p in PLOTS],
              "\n## Where the experience model is wrong\n",
              *wrong_examples(run / "fidelity" / "full" / "examples.jsonl"),
              "\n## Curriculum\n", *curriculum_lines(rows, seeds)]
    (run / "REPORT.md").write_text("\n".join(report) + "\n")
    print("\n".join(table1))
    print(f"\nwrote {run / 'REPORT.md'}")
    if args.docs:
        images = args.docs.with_suffix("")
        images.mkdir(parents=True, exist_ok=True)
        for p in PLOTS:
            shutil.copyfile(run / p, images / p)
        doc = ["# Results: DreamGym Table 1 in miniature (TextWorld)\n", *header, "", *table1,
               *fid, "\n## Plots\n", *[f"![{p[:-4]}]({images.name}/{p})" for p in PLOTS]]
        args.docs.write_text("\n".join(doc) + "\n")
        print(f"wrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
