"""Env workers as Ray actors on a real local Ray (num_cpus=2) and real TextWorld games: the same
seeded episodes as the in-process path, and a worker killed mid-episode loses nothing and counts
nothing twice."""

from __future__ import annotations

import os
import signal

import pytest

from tests.agent_fixtures import one_thread  # noqa: F401
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def policy(tw_simple_tasks, one_thread):  # noqa: F811
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.llm.models import load_model
    from dreamgym_cli.stages.train_agent_rl import corpus_from_env

    with VectorEnv("textworld", workers=0) as env:
        texts = corpus_from_env(env, tw_simple_tasks)
    return load_model("tiny:1m", texts=texts, full=True, seed=0)


def _episodes(policy, tasks, env, progress=None):
    from dreamgym_cli.llm.generate import open_backend
    from dreamgym_cli.rl.rollout import RolloutSettings, run_rollouts

    model, tokenizer = policy
    settings = RolloutSettings(max_new_tokens=12, max_turns=3, seed=7)
    backend = open_backend("transformers", model=model, tokenizer=tokenizer)
    return run_rollouts(env, backend, tokenizer, tasks, settings, group_size=2, call=1,
                        progress=progress)


def _view(episodes):
    """Everything of an episode but its random id."""
    return [(e.task.task_id, e.group, e.truncated, e.final_prompt_ids,
             [(t.state, t.admissible, t.prompt_ids, t.token_ids, t.action, t.next_state,
               t.reward, t.done, t.success) for t in e.turns]) for e in episodes]


def test_ray_workers_give_the_in_process_episodes(local_ray, policy, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.rl.rollout import open_batch_env

    with VectorEnv("textworld", workers=0, max_steps=3) as here:
        expected = _episodes(policy, tw_simple_tasks, here)
    env = open_batch_env("textworld", max_steps=3, workers=2, ray="local")
    try:
        assert type(env).__name__ == "RayVectorEnv" and env.workers == 2
        assert len(set(env.worker_pids()) | {os.getpid()}) == 3  # two actor processes
        got = _episodes(policy, tw_simple_tasks, env)
        assert env.steps_taken == here.steps_taken == sum(e.length for e in got)
    finally:
        env.close()
    assert _view(got) == _view(expected)
    assert sum(e.length for e in got) >= 6  # 6 episodes, at least one turn each


def test_an_actor_killed_mid_episode_is_restarted_and_its_episodes_rerun(
        local_ray, policy, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.envs.vector import VectorEnv
    from dreamgym_cli.scale.ray_env import RayVectorEnv

    with VectorEnv("textworld", workers=0, max_steps=3) as here:
        expected = _episodes(policy, tw_simple_tasks, here)
    env = RayVectorEnv("textworld", address="local", workers=2, max_steps=3)
    killed = []

    def kill_after_first_turn(turn, running):
        if turn == 1:
            pid = env.worker_pids()[0]
            os.kill(pid, signal.SIGKILL)  # mid-episode: its slots have taken one step
            killed.append(pid)

    try:
        got = _episodes(policy, tw_simple_tasks, env, progress=kill_after_first_turn)
        assert killed and env.restarts == 1
        assert env.worker_pids()[0] != killed[0]  # Ray restarted the actor in a new process
        # the killed actor's slots (even slots) re-ran their first step; nothing counted twice
        assert env.replayed_steps >= 1
        assert env.steps_taken == here.steps_taken == sum(e.length for e in got)
    finally:
        env.close()
    assert _view(got) == _view(expected)


def test_collect_on_ray_writes_the_in_process_episodes(local_ray, tw_simple_file, tmp_path):  # noqa: F811
    from dreamgym_cli.stages import collect
    from dreamgym_cli.trajectories import read_episodes

    def run(out, **kw):
        return collect.run(collect.CollectConfig(tasks=tw_simple_file, out=out, policy="mixed",
                                                 episodes_per_task=2, seed=3, **kw))

    run(tmp_path / "here.jsonl", workers=1)
    result = run(tmp_path / "ray.jsonl", ray="local", workers=2)
    assert result["episodes"] == 6

    def rows(path):
        return sorted((e["episode_id"], e["success"], [(s["state"], s["action"]) for s in steps])
                      for _, e, steps in read_episodes(path))

    assert rows(tmp_path / "ray.jsonl") == rows(tmp_path / "here.jsonl")


def test_a_job_whose_actor_dies_is_run_again_and_kept_once(local_ray, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.stages.collect import EpisodeJob, close_envs, run_episode
    from dreamgym_cli.scale.ray_env import run_jobs

    jobs = [EpisodeJob(t.to_row(), "expert", 0.0, k, 0, None) for t in tw_simple_tasks
            for k in range(2)]
    actors, retried = [], []

    def kill_one(index):
        if len(actors) == 2:  # once, after the first result: kill an actor (Ray restarts it)
            ray.kill(actors.pop(0), no_restart=False)

    results = run_jobs(run_episode, jobs, address="local", workers=2, cleanup=close_envs,
                       on_start=actors.extend, on_result=kill_one, on_retry=retried.append)
    expected = [run_episode(job) for job in jobs]
    close_envs()
    assert [e["episode_id"] for _, e, _ in results] == [e["episode_id"] for _, e, _ in expected]
    assert [[s["action"] for s in steps] for *_, steps in results] == \
        [[s["action"] for s in steps] for *_, steps in expected]
    assert len(retried) <= 1  # the killed actor's job, if it had one in flight, ran once more


def test_a_job_is_run_again_once_however_slow_its_actor_restarts(local_ray):
    """Under CPU load a restart takes seconds; the re-run job waits for the actor rather than
    being refused by it (ActorUnavailableError) once per second until its attempts run out."""
    import time

    from dreamgym_cli.scale.ray_env import run_jobs

    class SlowToRestart:  # unpickled in each actor's constructor; slow only in a restart
        def __getstate__(self):
            return {"restart_seconds": 3.0}

        def __setstate__(self, state):
            if ray.get_runtime_context().was_current_actor_reconstructed:
                time.sleep(state["restart_seconds"])

        def __call__(self, job):
            time.sleep(0.2)
            return job * 10

    actors, retried = [], []

    def kill_one(index):
        if len(actors) == 2:
            ray.kill(actors.pop(0), no_restart=False)

    results = run_jobs(SlowToRestart(), list(range(6)), address="local", workers=2,
                       on_start=actors.extend, on_result=kill_one, on_retry=retried.append)
    assert results == [0, 10, 20, 30, 40, 50]
    assert len(retried) <= 1


# ---- the stages through the real CLI -----------------------------------------------------------

from tests.agent_fixtures import agent_workdir, em_dir, sft_policy  # noqa: E402, F401
from tests.agent_fixtures import train_tiny_rl  # noqa: E402

ROLLOUT_KEYS = ("rollout/episodes", "rollout/turns", "rollout/success_rate",
                "rollout/return_mean", "rollout/completion_tokens", "rollout/format_error_rate")


def test_train_agent_on_ray_workers_trains_like_in_process(local_ray, run_cli, sft_policy,
                                                           tw_simple_file, tmp_path):  # noqa: F811
    import json

    def train(out, *extra):
        code, _, err = train_tiny_rl(run_cli, sft_policy, "textworld", tw_simple_file, out,
                                     "--iterations", "2", "--batch-tasks", "2",
                                     "--max-real-steps", "40", "--json", *extra)
        assert code == 0, err
        return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]

    here = train(tmp_path / "here", "--workers", "0")
    on_ray = train(tmp_path / "ray", "--workers", "2", "--ray", "local")
    assert len(here) == len(on_ray) == 2
    for a, b in zip(here, on_ray):
        assert {k: a[k] for k in ROLLOUT_KEYS} == {k: b[k] for k in ROLLOUT_KEYS}
        assert a["real_steps_used"] == b["real_steps_used"]
        assert abs(a["train/loss"] - b["train/loss"]) <= 1e-5 * max(1.0, abs(a["train/loss"]))


def test_rollout_in_a_dream_env_actor_gives_the_in_process_episodes(
        local_ray, run_cli, sft_policy, em_dir, agent_workdir, tw_simple_file, tmp_path):  # noqa: F811
    import json
    import shutil

    def rollout(name, *extra):
        store = tmp_path / name
        shutil.copytree(agent_workdir / "S", store)
        code, out, err = run_cli("rollout", "--policy", sft_policy, "--env", f"dream:{em_dir}",
                                 "--tasks", tw_simple_file, "--store", store,
                                 "--episodes-per-task", "2", "--max-steps-per-episode", "2",
                                 "--json", *extra)
        assert code == 0, err
        return json.loads(out)

    here, on_ray = rollout("here"), rollout("ray", "--ray", "local")
    assert here["source"] == on_ray["source"] == "synthetic"
    assert {k: here[k] for k in ROLLOUT_KEYS} == {k: on_ray[k] for k in ROLLOUT_KEYS}
    assert here["store/episodes_added"] == on_ray["store/episodes_added"] == 6


def test_eval_on_ray_workers_reports_the_in_process_results(local_ray, run_cli, sft_policy,
                                                            tw_simple_file, tmp_path):  # noqa: F811
    import json

    def evaluate(name, *extra):
        code, out, err = run_cli("eval", "--policy", sft_policy, "--tasks", tw_simple_file,
                                 "--max-steps-per-episode", "3", "--out", tmp_path / name,
                                 "--json", *extra)
        assert code == 0, err
        return (tmp_path / name / "episodes.jsonl").read_text().count("\n"), json.loads(out)

    (n_here, here), (n_ray, on_ray) = evaluate("here", "--workers", "0"), \
        evaluate("ray", "--ray", "local", "--workers", "2")
    assert n_here == n_ray == 3
    drop = {"out", "skipped", "seconds"}
    assert {k: v for k, v in here.items() if k not in drop and "time" not in k} == \
        {k: v for k, v in on_ray.items() if k not in drop and "time" not in k}
