"""The curriculum inside train-agent: the λ mix of batches, observe → variance → evolve, PPO's
clusters, resume of the generated pool, and the CLI (metrics, report, --no-curriculum)."""

from __future__ import annotations

import json
import random

import pytest

from dreamgym_cli.curriculum.sampler import CurriculumSampler, CurriculumSettings
from dreamgym_cli.rl.rollout import EpisodeRollout, Turn
from dreamgym_cli.schema import Task
from tests.agent_fixtures import agent_workdir, em_dir, one_thread, sft_policy  # noqa: F401
from tests.agent_fixtures import train_tiny_rl
from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401

INSTRUCTIONS = ["go to the red ball", "open the yellow door", "pick up the purple box",
                "put the green key next to the grey ball", "go to the blue box",
                "open the red door and go through it"]


def _pool(n=len(INSTRUCTIONS)) -> list[Task]:
    return [Task(task_id=f"t{i}", env="babyai", instruction=text, spec={"level": i})
            for i, text in enumerate(INSTRUCTIONS[:n])]


def _episode(task: Task, group: int, reward: float) -> EpisodeRollout:
    turn = Turn(state="s", admissible=None, prompt_ids=[1], token_ids=[2], logprobs=[-1.0],
                text="<action>go</action>", action="go", valid_format=True, in_admissible=None,
                reward=reward, done=True, success=reward > 0)
    return EpisodeRollout(task=task, group=group, episode_id=f"{task.task_id}-{group}-{reward}",
                          turns=[turn])


def _grouped(tasks: list[Task], outcomes: dict[str, list[float]]) -> list[EpisodeRollout]:
    """G episodes per draw with the given rewards (what the trainer's rollout returns)."""
    return [_episode(t, g, r) for g, t in enumerate(tasks) for r in outcomes[t.task_id]]


class Harder:
    """A deterministic candidate generator: the parent's goal and one more step, n ways."""

    EXTRA = ["then pick up the grey key and open the blue door",
             "and afterwards carry the yellow ball into the far room",
             "then close every door behind you and drop the key"]

    def __init__(self):
        self.calls = []

    def __call__(self, seeds, n, seed):
        self.calls.append(([s.task.task_id for s in seeds], n, seed))
        return [[f"<task>{s.task.instruction}, {self.EXTRA[i % 3]}</task>" for i in range(n)]
                for s in seeds]


def _settings(**kw):
    return CurriculumSettings(**{"every": 1, "lam": 0.3, "seeds_per_round": 2, "candidates": 2,
                                 **kw})


def test_batches_hold_at_most_lambda_generated_tasks_and_observe_evolves_the_pool():
    pool = _pool()
    gen = Harder()
    sampler = CurriculumSampler(pool, _settings(), generate=gen)
    batch = sampler(4, random.Random(0))
    assert len(batch) == 4 and all(t.origin == "seed" for t in batch)  # nothing generated yet
    outcomes = {t.task_id: [0.0, 0.0] for t in batch}
    outcomes[batch[0].task_id] = [1.0, 0.0]  # V = 0.25
    outcomes[batch[1].task_id] = [1.0, 1.0, 1.0, 0.0]  # V = 0.1875
    metrics = sampler.observe(_grouped(batch, outcomes))
    # the two tasks with V > 0 are the seeds, in order of V; one variation selected for each
    assert gen.calls == [([batch[0].task_id, batch[1].task_id], 2, 1)]
    assert metrics["curriculum/added"] == 2 and metrics["curriculum/seeds"] == 2
    assert metrics["curriculum/pool_size"] == 8 and metrics["curriculum/generated"] == 2
    assert metrics["curriculum/zero_variance_share"] == pytest.approx(0.5)
    assert metrics["curriculum/mean_variance"] == pytest.approx((0.25 + 0.1875) / 4)
    assert metrics["curriculum/fraction_generated"] == 0.0
    new = sampler.generated_tasks()
    assert {t.parent_id for t in new} == {batch[0].task_id, batch[1].task_id}
    assert all(t.origin == "generated" and t.generation == 1 for t in new)
    examples = sampler.examples()
    assert {e["parent"] for e in examples} == {batch[0].instruction, batch[1].instruction}
    # λ = 0.3 of 10 draws: 3 generated at most, and only 2 exist
    for seed in range(5):
        drawn = sampler(10, random.Random(seed))
        assert sum(t.origin == "generated" for t in drawn) == 2 and len(drawn) == 10
    assert sum(t.origin == "generated" for t in sampler(3, random.Random(1))) == 0  # ⌊0.9⌋ = 0
    sampler(7, random.Random(2))
    assert sampler.observe([])["curriculum/fraction_generated"] == pytest.approx(2 / 7)


def test_rounds_come_every_n_iterations_with_the_variances_since_the_last():
    pool = _pool()
    gen = Harder()
    sampler = CurriculumSampler(pool, _settings(every=2, seeds_per_round=4), generate=gen)
    first = sampler(2, random.Random(0))
    m1 = sampler.observe(_grouped(first, {first[0].task_id: [1.0, 0.0],
                                          first[1].task_id: [0.0, 0.0]}))
    assert m1["curriculum/added"] == 0 and gen.calls == []  # iteration 1 of 2: no round
    second = [t for t in pool if t not in first][:2]
    sampler.last_batch = second
    sampler.observe(_grouped(second, {second[0].task_id: [1.0, 0.0, 0.0],
                                      second[1].task_id: [1.0, 1.0]}))
    # the round sees both iterations' variances: two seeds, the higher V first
    assert gen.calls == [([first[0].task_id, second[0].task_id], 2, 2)]
    assert sampler.pending == {}


def test_no_curriculum_is_uniform_and_never_generates():
    pool = _pool()
    sampler = CurriculumSampler(pool, _settings(enabled=False))
    batch = sampler(6, random.Random(3))
    assert sorted(t.task_id for t in batch) == sorted(t.task_id for t in pool)  # no repeats
    outcomes = {t.task_id: [1.0, 0.0] for t in batch}
    metrics = sampler.observe(_grouped(batch, outcomes))
    assert metrics["curriculum/enabled"] == 0 and metrics["curriculum/added"] == 0
    assert metrics["curriculum/pool_size"] == 6 and sampler.pool == pool
    assert metrics["curriculum/zero_variance_share"] == 0.0  # measured even when off
    with pytest.raises(ValueError, match="candidate generator"):
        CurriculumSampler(pool, _settings())


def test_tasks_generated_before_the_run_count_against_lambda():
    pool = _pool(4)
    child = Task(task_id="t0/gen-1", env="babyai", instruction="go to the red ball twice",
                 spec={}, origin="generated", parent_id="t0", generation=1)
    sampler = CurriculumSampler(pool + [child], _settings(lam=0.5), generate=Harder())
    assert [t.task_id for t in sampler.original] == ["t0", "t1", "t2", "t3"]
    for seed in range(4):
        drawn = sampler(2, random.Random(seed))
        assert sum(t.task_id == "t0/gen-1" for t in drawn) == 1  # ⌊0.5·2⌋ = 1 generated
    assert sampler.generated_tasks() == []  # none generated in this run


def test_ppo_groups_tasks_by_clustering_their_instructions():
    tasks = [Task(task_id=f"p{i}", env="babyai", instruction=text, spec={}) for i, text in
             enumerate(["cook a meal with the eggs in the kitchen", "fry the eggs in the kitchen",
                        "go to the red ball", "walk over to the red ball"])]
    sampler = CurriculumSampler(tasks, _settings(algo="ppo", enabled=False))
    sampler.last_batch = tasks
    # one episode per task: per task V would be 0 everywhere; per cluster it is not
    episodes = [_episode(t, i, r) for i, (t, r) in enumerate(zip(tasks, [1.0, 0.0, 0.0, 0.0]))]
    group_v, task_v = sampler._variances(episodes, [1.0, 0.0, 0.0, 0.0])
    assert len(group_v) == 2  # k = ⌈√4⌉
    assert task_v["p0"] == task_v["p1"] == pytest.approx(0.25)  # the cooking cluster
    assert task_v["p2"] == task_v["p3"] == 0.0
    metrics = sampler.observe(episodes)
    assert metrics["curriculum/groups"] == 2
    assert metrics["curriculum/zero_variance_share"] == pytest.approx(0.5)


def test_resume_restores_the_generated_tasks_up_to_the_checkpoint(tmp_path):
    pool = _pool()
    sampler = CurriculumSampler(pool, _settings(), generate=Harder())
    batch = sampler(2, random.Random(0))
    sampler.observe(_grouped(batch, {batch[0].task_id: [1.0, 0.0], batch[1].task_id: [0.0]}))
    sampler.save(tmp_path)
    again = CurriculumSampler(pool, _settings(), generate=Harder())
    again.resume(tmp_path, 1)
    assert again.generated_tasks() == sampler.generated_tasks() and again.iteration == 1
    before = CurriculumSampler(pool, _settings(), generate=Harder())
    before.resume(tmp_path, 0)  # a checkpoint from before the round
    assert before.generated_tasks() == []


def _manifest(path):
    from dreamgym_cli.artifacts import read_manifest

    return read_manifest(path)


def _lines(policy_dir):
    return [json.loads(x) for x in (policy_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("flag", ["--curriculum", "--no-curriculum"])
def test_cli_grpo_in_dream_reports_the_curriculum(run_cli, em_dir, sft_policy, tw_simple_file,
                                                  tmp_path, flag):  # noqa: F811
    code, out, err = train_tiny_rl(run_cli, sft_policy, f"dream:{em_dir}", tw_simple_file,
                                   tmp_path / "P", "--iterations", "2", "--batch-tasks", "2",
                                   flag, "--lambda", "0.5", "--no-enrich", "--json")
    assert code == 0, err
    result = json.loads(out)
    lines = _lines(tmp_path / "P")
    assert [x["iteration"] for x in lines] == [1, 2]
    keys = {"curriculum/pool_size", "curriculum/fraction_generated", "curriculum/mean_variance",
            "curriculum/zero_variance_share", "curriculum/added",
            "curriculum/rejected/near_duplicate", "curriculum/enabled"}
    for line in lines:
        assert keys <= set(line)
        assert line["curriculum/groups"] == 2  # one GRPO group per draw
        assert 0.0 <= line["curriculum/zero_variance_share"] <= 1.0
    manifest = _manifest(tmp_path / "P")
    report = manifest["curriculum"]
    on = flag == "--curriculum"
    assert result["curriculum"] == report["status"] == ("on" if on else "off: --no-curriculum")
    assert all(x["curriculum/enabled"] == int(on) for x in lines)
    generated = tmp_path / "P" / "generated_tasks.jsonl"
    if not on:  # the ablation: the pool stays the task file's 3 tasks
        assert all(x["curriculum/pool_size"] == 3 and x["curriculum/added"] == 0 for x in lines)
        assert not generated.exists() and report["examples"] == []
    else:  # the pool grows by what the rounds added; the report shows them with parents
        added = sum(x["curriculum/added"] for x in lines)
        assert lines[-1]["curriculum/pool_size"] == 3 + added == 3 + len(report["examples"])
        assert generated.exists() == (added > 0)
        assert all(e["parent"] and e["instruction"] for e in report["examples"])


def test_cli_real_env_turns_the_curriculum_off_and_says_so(run_cli, sft_policy, tw_simple_file,
                                                           tmp_path):  # noqa: F811
    code, out, err = train_tiny_rl(run_cli, sft_policy, "textworld", tw_simple_file,
                                   tmp_path / "P", "--iterations", "1", "--batch-tasks", "1",
                                   "--workers", "0", "--json")
    assert code == 0, err
    assert "curriculum off: real env" in " ".join(err.split())
    assert json.loads(out)["curriculum"].startswith("off: real env")
    line = _lines(tmp_path / "P")[0]
    assert line["curriculum/enabled"] == 0 and line["curriculum/pool_size"] == 3


@pytest.mark.parametrize("args, words", [
    (("--lambda", "1.5"), "lambda"),
    (("--curriculum-every", "0"), "curriculum_every"),
    (("--candidates", "0"), "candidates"),
])
def test_bad_curriculum_options_exit_2(run_cli, tmp_path, args, words):
    code, out, err = run_cli("train-agent", "--algo", "grpo", "--base", "tiny:1m", "--tasks",
                             tmp_path / "T.parquet", *args, "--out", tmp_path / "P")
    assert code == 2 and words in err and out == ""
    assert not (tmp_path / "P").exists()
