"""`train-agent --algo grpo|ppo` under `accelerate launch`: 2 real gloo processes on CPU, real
TextWorld games, the tiny SFT policy of the agent fixtures.

What is compared with one process, and what is not: each rank samples its own share of the task
draws with its own seeds (rank r: draws r, r+2, ...; seeded by seed, iteration and r), so a
2-process run's episodes are NOT the 1-process run's; only the task draws are. The learning from
a given set of episodes is: `test_learning_from_the_same_episodes_*` rolls out the same real
episodes in both settings and checks the losses and weights against one process (relative 1e-4).
The full runs check what the launch itself must get right: every rank ends with the same
weights, one metrics log, manifest and checkpoint, the global budget and store counts, resume.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent_fixtures import agent_workdir, em_dir, one_thread, sft_policy  # noqa: F401
from tests.tw_fixtures import tw_games, tw_simple_file  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "scale_train_script.py"
DREAMGYM = Path(sys.executable).parent / "dreamgym"
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
          "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
          "--main_process_port", "0"]
BUDGET, GROUP, TURNS = 30, 2, 3  # 30 real steps: 3 draws of 2 x 3 turns, then what is left


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    return env


def _launch(command: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(LAUNCH + [str(c) for c in command], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=600)


def _close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-8)


def _config(sft_policy: Path, tasks: Path, store: Path, out: Path) -> dict:  # noqa: F811
    """The run every launch below makes (TrainAgentConfig fields)."""
    return {"algo": "grpo", "init": str(sft_policy), "env": "textworld", "tasks": str(tasks),
            "iterations": 2, "group_size": GROUP, "batch_tasks": 3,
            "max_steps_per_episode": TURNS, "max_new_tokens": 12, "max_real_steps": BUDGET,
            "workers": 0, "invalid_penalty": 0.1, "entropy_coef": 0.01, "lr": 1e-3,
            "mini_batches": 2, "eval_tasks": str(tasks),
            "eval_every": 1, "eval_turns": 2, "seed": 5, "store": str(store), "out": str(out)}


def _cli_args(config: dict) -> list[str]:
    args = ["train-agent"]
    for key, value in config.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def _store_copy(agent_workdir: Path, dest: Path) -> Path:  # noqa: F811
    shutil.copytree(agent_workdir / "S", dest)
    return dest


def _episodes_of(store: Path, policy: str, source: str = "real") -> int:
    from dreamgym_cli.store import ReplayStore

    return ReplayStore.open(store).sql(
        f"SELECT count(*) FROM episodes WHERE policy = '{policy}' AND source = '{source}'"
    ).column(0)[0].as_py()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _without_time(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def _weights(policy_dir: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for f in sorted(policy_dir.glob("*.safetensors"))
            for k, v in load_file(str(f)).items()}


# ---- refused combinations (no launch needed: the refusal comes before any process group) ------


def test_ray_under_a_launch_is_refused_with_the_flags_named(tmp_path, monkeypatch):
    from dreamgym_cli.errors import InputError
    from dreamgym_cli.stages import train_agent

    monkeypatch.setenv("WORLD_SIZE", "2")  # what `accelerate launch` sets in every process
    (tmp_path / "P0").mkdir()  # the inputs need only exist: the refusal comes before reading them
    (tmp_path / "T.parquet").write_bytes(b"")
    for algo in ("grpo", "ppo"):
        config = train_agent.TrainAgentConfig(
            **{**_config(tmp_path / "P0", tmp_path / "T.parquet", tmp_path / "S",
                         tmp_path / "P"), "store": None, "eval_tasks": None, "algo": algo,
               "ray": "local"})
        with pytest.raises(InputError) as refused:
            train_agent.run(config)
        assert refused.value.field == "ray"
        assert "--ray" in str(refused.value) and "accelerate launch" in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P0", "T.parquet"]  # nothing written


# ---- the same episodes: the learning equals one process -----------------------------------------


@pytest.mark.slow
@pytest.mark.xdist_group("accelerate")
@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_learning_from_the_same_episodes_equals_one_process(algo, sft_policy,  # noqa: F811
                                                            tw_simple_file, tmp_path):
    args = [str(SCRIPT), "rl-episodes", None, "--policy", sft_policy, "--tasks", tw_simple_file,
            "--algo", algo]
    results = {}
    for name, prefix in (("one", [sys.executable]), ("two", LAUNCH)):
        args[2] = tmp_path / f"{name}.json"
        run = subprocess.run(prefix + [str(a) for a in args], capture_output=True, text=True,
                             env=_env(), timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    one, two = results["one"], results["two"]
    assert (one["world"], two["world"]) == (1, 2)
    assert one["turns"] == two["turns"] > 0
    assert len(one["steps"]) == len(two["steps"]) == 2
    wanted = {"train/loss", "train/kl", "train/grad_norm", "train/advantage_abs_mean"}
    if algo == "ppo":
        wanted |= {"train/value_loss"}
    for a, b in zip(one["steps"], two["steps"]):
        assert set(a) == set(b) and wanted <= set(a)
        assert a["train/advantage_abs_mean"] > 0  # the invalid-action penalty gives a signal
        for key in a:
            assert _close(a[key], b[key]), (key, a[key], b[key])
    assert all(_close(a, b) for a, b in zip(one["weights"], two["weights"]))
    if algo == "ppo":
        assert all(_close(a, b) for a, b in zip(one["head"], two["head"]))


# ---- whole runs through the CLI ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_process_run(sft_policy, tw_simple_file, agent_workdir, tmp_path_factory):  # noqa: F811
    """A 2-process GRPO run on TextWorld, start to end: (its output dir, its store, the config)."""
    d = tmp_path_factory.mktemp("rl2")
    store = _store_copy(agent_workdir, d / "S")
    before = _episodes_of(store, "P")
    config = _config(sft_policy, tw_simple_file, store, d / "P")
    run = _launch([DREAMGYM] + _cli_args(config) + ["--json"])
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return {"dir": d, "out": d / "P", "store": store, "before": before, "config": config,
            "results": results}


@pytest.mark.slow
@pytest.mark.xdist_group("accelerate")
def test_a_two_process_grpo_run_writes_once_with_equal_weights_and_a_global_budget(
        two_process_run):
    from dreamgym_cli.artifacts import read_manifest

    out, d = two_process_run["out"], two_process_run["dir"]
    # one line per rank: rank 0 published, rank 1 trained and wrote nothing
    ranks = sorted(two_process_run["results"], key=lambda r: r.get("rank", 0))
    assert len(ranks) == 2 and ranks[1] == {"out": str(out), "skipped": False, "rank": 1}
    assert ranks[0]["skipped"] is False and ranks[0]["iterations_run"] == 2
    assert sorted(p.name for p in d.iterdir()) == ["P", "S"]  # no temp dir, no checkpoints left
    manifest = read_manifest(out)
    assert manifest["processes"] == 2
    digests = manifest["weights_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # the ranks ended with equal weights
    # metrics.jsonl written once, by rank 0: each iteration once, validation before and after each
    lines = _lines(out / "metrics.jsonl")
    assert [m["iteration"] for m in lines] == [0, 1, 2]
    assert all("eval/success_rate" in m for m in lines)
    first, second = lines[1], lines[2]
    # every rank's episodes counted: all 3 draws of 2 in iteration 1
    assert first["rollout/episodes"] == 3 * GROUP
    # the budget is global: what is left after iteration 1 decides iteration 2's draws
    left = BUDGET - first["rollout/turns"]
    assert second["rollout/episodes"] == min(3, left // (GROUP * TURNS)) * GROUP
    assert second["real_steps_used"] == first["rollout/turns"] + second["rollout/turns"] <= BUDGET
    assert manifest["metrics"]["real_steps_used"] == second["real_steps_used"]
    # the store got every rank's episodes, once
    added = _episodes_of(two_process_run["store"], "P") - two_process_run["before"]
    assert added == first["rollout/episodes"] + second["rollout/episodes"]
    assert first["store/episodes_added"] == first["rollout/episodes"]


@pytest.mark.slow
@pytest.mark.xdist_group("accelerate")
def test_a_two_process_run_resumes_from_its_checkpoint(two_process_run, agent_workdir,  # noqa: F811
                                                       tmp_path):
    store = _store_copy(agent_workdir, tmp_path / "S")
    config = {**two_process_run["config"], "store": str(store), "out": str(tmp_path / "P")}
    (tmp_path / "config.json").write_text(json.dumps(config))
    # rank 0 dies after iteration 1's checkpoint; the launcher stops rank 1
    run = _launch([SCRIPT, "train-agent", tmp_path / "stopped.json", "--config",
                   tmp_path / "config.json", "--stop-after", 1])
    assert run.returncode != 0
    assert json.loads((tmp_path / "stopped.json").read_text()) == {"stopped": True, "world": 2}
    checkpoints = tmp_path / ".P.checkpoints"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".P.checkpoints", "S", "config.json",
                                                           "stopped.json"]
    assert json.loads((checkpoints / "last" / "state.json").read_text())["iteration"] == 1
    assert [m["iteration"] for m in _lines(checkpoints / "metrics.jsonl")] == [0, 1]
    run = _launch([DREAMGYM] + _cli_args(config) + ["--resume"])
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    resumed = _lines(tmp_path / "P" / "metrics.jsonl")
    uninterrupted = _lines(two_process_run["out"] / "metrics.jsonl")
    assert [m["iteration"] for m in resumed] == [0, 1, 2]
    # iteration 2 started from iteration 1's weights and optimizer: the uninterrupted run's
    for a, b in zip(resumed, uninterrupted):
        a, b = _without_time(a), _without_time(b)
        assert set(a) == set(b)
        for key in a:
            assert _close(a[key], b[key], 1e-6), (a["iteration"], key, a[key], b[key])
    wa, wb = _weights(tmp_path / "P"), _weights(two_process_run["out"])
    assert set(wa) == set(wb) and wa
    import torch

    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-5, atol=1e-6, msg=name)
    assert not checkpoints.exists()


@pytest.mark.slow
@pytest.mark.xdist_group("accelerate")
def test_a_two_process_dream_run_keeps_the_curriculum_on_rank0_and_stores_episodes_once(
        em_dir, sft_policy, tw_simple_file, agent_workdir, tmp_path):  # noqa: F811
    from dreamgym_cli.artifacts import read_manifest

    store = _store_copy(agent_workdir, tmp_path / "S")
    run = _launch([DREAMGYM, "train-agent", "--algo", "grpo", "--init", sft_policy, "--env",
                   f"dream:{em_dir}", "--tasks", tw_simple_file, "--store", store,
                   "--iterations", 2, "--group-size", GROUP, "--batch-tasks", 3,
                   "--max-steps-per-episode", TURNS, "--max-new-tokens", 12,
                   "--seeds-per-round", 2, "--candidates", 2, "--out", tmp_path / "PD"])
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    lines = _lines(tmp_path / "PD" / "metrics.jsonl")
    assert [m["iteration"] for m in lines] == [1, 2]
    turns = 0
    for m in lines:
        assert m["rollout/episodes"] == 3 * GROUP and m["curriculum/enabled"] == 1
        assert m["curriculum/groups"] == 3  # rank 0 saw every rank's groups
        turns += m["rollout/turns"]
        assert m["dream/steps"] == turns  # each rank's dream env counts its own steps: summed
    # rank 0 wrote every rank's synthetic episodes, once
    stored = _episodes_of(store, "PD", "synthetic")
    assert stored == sum(m["store/episodes_added"] for m in lines) == 2 * 3 * GROUP
    manifest = read_manifest(tmp_path / "PD")
    assert manifest["metrics"]["curriculum"] == "on" and manifest["processes"] == 2
    assert manifest["weights_digests"][0] == manifest["weights_digests"][1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PD", "S"]
