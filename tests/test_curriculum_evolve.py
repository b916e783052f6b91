"""Task variation (curriculum/variation.py) and `dreamgym tasks evolve`, on real TextWorld tasks.

The validator and selector are checked on hand-written candidates with the real embedder; the
stage runs end to end with a tiny trained experience model (which writes junk: the test checks
the accounting) and with a swapped candidate generator fed realistic candidates (the test checks
that the valid ones land with their lineage).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tw_simple_file) -> Path:  # noqa: F811
    """A store with 2 mixed-policy episodes per tw-simple game (returns differ: V > 0), a file of
    1 expert episode per game (V = 0), and a tiny experience model trained for 2 steps (no
    retrieval: the fastest model to train, and task generation does not use retrieval)."""
    from dreamgym_cli.cli import main

    d = tmp_path_factory.mktemp("evolve")
    assert main(["collect", "--tasks", str(tw_simple_file), "--policy", "mixed", "--epsilon",
                 "0.5", "--episodes-per-task", "2", "--max-steps", "8", "--seed", "3",
                 "--workers", "1", "--out", str(d / "E.jsonl")]) == 0
    assert main(["collect", "--tasks", str(tw_simple_file), "--policy", "expert",
                 "--episodes-per-task", "1", "--workers", "1", "--out", str(d / "H.jsonl")]) == 0
    assert main(["ingest", str(d / "E.jsonl"), "--store", str(d / "S")]) == 0
    assert main(["annotate", "--store", str(d / "S")]) == 0
    assert main(["train-em", "--store", str(d / "S"), "--base", "tiny:1m", "--max-steps", "2",
                 "--batch-size", "2", "--max-length", "256", "--retrieval-k", "0",
                 "--out", str(d / "EM")]) == 0
    return d


@pytest.fixture(scope="module")
def seed3(workdir, tw_simple_tasks):  # noqa: F811
    """tw-simple seed 3 (the apple) with its real initial state from the store."""
    from dreamgym_cli.curriculum.variation import SeedContext
    from dreamgym_cli.envs.dream import real_start_states
    from dreamgym_cli.store import ReplayStore

    task = next(t for t in tw_simple_tasks if t.task_id.endswith("seed-3"))
    state, admissible = real_start_states(ReplayStore.open(workdir / "S"))[task.task_id]
    return SeedContext(task=task, variance=0.25, initial_state=state, admissible=admissible)


def _tag(text: str) -> str:
    return f"<task>{text}</task>"


HARDER = " Then, take the apple from the stove and put it back in the refrigerator."
LONGER = ("Open the chest drawer in the bedroom, take the old key, unlock the wooden door with the "
          "old key, open the wooden door, go east, open the refrigerator, take the apple, close "
          "the refrigerator, then put the apple on the stove.")
OTHER_ROOT = ("Open the refrigerator within the kitchen and recover the apple from the "
              "refrigerator, then put the apple on the stove.")


def test_parse_and_normalize():
    from dreamgym_cli.curriculum.variation import normalize_text, parse_candidate

    assert parse_candidate("<task>  Open the\n door. </task> trailing") == "Open the door."
    assert parse_candidate("<think>x</think><task>Go east") == "Go east"  # cut at the stop string
    assert parse_candidate("<task>   </task>") is None
    assert parse_candidate("just words") is None
    assert normalize_text("Open, the DOOR!  now") == "open the door now"


def test_check_text_rejects_each_kind_and_keeps_the_valid(seed3, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.curriculum.variation import (Candidate, VariationRules, check_text,
                                                   normalize_text)

    parent = seed3.task.instruction
    other_game = next(t for t in tw_simple_tasks if t.task_id.endswith("seed-1")).instruction
    taken = {normalize_text(t.instruction) for t in tw_simple_tasks}
    cases = {
        "no tags at all": "unparseable",
        _tag(" "): "unparseable",
        _tag("Open the door."): "too_short",
        _tag(" ".join([parent] * 4)): "too_long",
        _tag(parent.upper()): "copy_of_parent",
        _tag(parent.split(". ")[0] + "."): "copy_of_parent",  # a cut-down piece of the parent
        _tag("Open the refrigerator, then put the apple on the stove."): "copy_of_parent",
        _tag(other_game.lower()): "duplicate_text",  # another pool task, case changed
        _tag("Go to the dungeon and slay the dragon with the golden sword, then find the "
             "treasure chest."): "out_of_vocabulary",
        _tag(parent + HARDER): None,
        _tag(LONGER): None,
    }
    rules = VariationRules()
    for i, (raw, expected) in enumerate(cases.items()):
        c = check_text(Candidate(seed3.task.task_id, i, raw), seed3, taken, rules)
        assert c.reason == expected, (raw[:80], c.reason, c.oov_share)
    valid = check_text(Candidate("p", 0, _tag(LONGER)), seed3, taken, rules)
    assert valid.oov_share <= rules.max_oov_share and valid.instruction == LONGER


def _pool_with_family_and_other_root(tw_simple_tasks):  # noqa: F811
    """The 3 games, a generated child of seed 3 (its family) and an unrelated seed-origin task."""
    from dreamgym_cli.curriculum.variation import make_generated_task

    seed3 = next(t for t in tw_simple_tasks if t.task_id.endswith("seed-3"))
    child = make_generated_task(seed3, seed3.instruction + HARDER, None)
    other = dataclasses.replace(seed3, task_id="hand/other-root", instruction=OTHER_ROOT)
    return list(tw_simple_tasks) + [child, other], seed3


def test_embedding_checks_use_family_and_global_thresholds(seed3, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.curriculum.variation import (Candidate, VariationRules, _Known,
                                                   check_embeddings, check_text, default_embed,
                                                   select_variation)

    pool, _ = _pool_with_family_and_other_root(tw_simple_tasks)
    known = _Known(pool, default_embed)
    raws = [
        # the family's child with one word changed: cosine ~0.9997 ≥ 0.995
        _tag(seed3.task.instruction + HARDER.replace(" in ", " into ")),
        # the unrelated task plus one step: cosine ~0.987 ≥ 0.95 with a task of another family
        _tag(OTHER_ROOT.replace("within", "in")[:-1] + ", then close the refrigerator."),
        _tag(LONGER),  # ~0.83 with the parent: new enough
        _tag(seed3.task.instruction + " Then, examine the stove and eat the apple."),
    ]
    batch = [check_text(Candidate(seed3.task.task_id, i, r), seed3, set(known.texts),
                        VariationRules()) for i, r in enumerate(raws)]
    assert [c.reason for c in batch] == [None] * 4
    vectors = check_embeddings(batch, seed3, known, VariationRules())
    assert [c.reason for c in batch] == ["near_duplicate", "near_duplicate", None, None]
    assert set(vectors) == {id(c) for c in batch}
    assert all(0 <= c.novelty <= 1 for c in batch)
    chosen = select_variation(batch)
    # the more different of the two valid ones (LONGER reorders and rewrites every step)
    assert chosen is batch[2] and batch[2].novelty > batch[3].novelty
    assert select_variation(batch[:2]) is None


def test_evolve_pool_lineage_dedup_and_a_second_generation(workdir, tw_simple_tasks):  # noqa: F811
    from dreamgym_cli.curriculum.variation import REJECTION_REASONS, evolve_pool
    from dreamgym_cli.store import ReplayStore

    store = ReplayStore.open(workdir / "S")
    by_id = {t.task_id: t for t in tw_simple_tasks}
    s1, s2, s3 = sorted(by_id)
    variances = {s1: 0.0, s2: 0.1, s3: 0.25}
    proposals = {  # seed 3 first (larger V), then seed 2
        s3: [_tag(by_id[s3].instruction), _tag(LONGER), _tag(LONGER), "junk"],
        s2: [_tag("Slay the dragon in the dungeon with the golden sword, then find treasure."),
             _tag(by_id[s2].instruction + " Then, eat the lettuce."), _tag("Go west."),
             _tag(LONGER)],  # seed 3's selection, proposed again for seed 2
    }
    calls = []

    def generate(seeds, n, seed):
        calls.append(([s.task.task_id for s in seeds], n, seed))
        return [proposals[s.task.task_id][:n] for s in seeds]

    result = evolve_pool(None, tw_simple_tasks, variances, seeds_per_round=4, candidates=4,
                         store=store, seed=7, generate=generate)
    assert calls == [([s3, s2], 4, 7)]  # V = 0 is never a seed; ordered by V
    assert [t.instruction for t in result.new_tasks] == [LONGER, by_id[s2].instruction +
                                                         " Then, eat the lettuce."]
    states = {r["task_id"]: r["state"] for r in store.sql(
        "SELECT task_id, state FROM steps WHERE t = 0 AND source = 'real'").to_pylist()}
    for task in result.new_tasks:
        parent = by_id[task.parent_id]
        assert task.origin == "generated" and task.generation == 1 and task.split == "test"
        assert task.task_id.startswith(parent.task_id + "/gen-")
        assert task.spec == {**parent.spec, "initial_state": states[parent.task_id]}
    assert result.rejected_counts == dict.fromkeys(REJECTION_REASONS, 0) | {
        "copy_of_parent": 1, "duplicate_text": 2, "unparseable": 1, "out_of_vocabulary": 1,
        "too_short": 1}
    m = result.metrics
    assert m["curriculum/pool_size_after"] == 5 and m["curriculum/generated_fraction"] == 0.4
    assert m["curriculum/candidates"] == 8 and m["curriculum/valid_candidates"] == 2
    assert m["curriculum/mean_variance"] == pytest.approx(0.35 / 3)
    assert m["curriculum/zero_variance_share"] == pytest.approx(1 / 3)
    assert [e["parent"] for e in result.examples] == [by_id[s3].instruction,
                                                      by_id[s2].instruction]

    # A second round from the generated task: generation 2 inherits the family's start state.
    child = result.new_tasks[0]
    pool2 = list(tw_simple_tasks) + result.new_tasks
    again = evolve_pool(None, pool2, {child.task_id: 0.25}, store=store, generate=lambda s, n, _:
                        [[_tag(LONGER + " Then, eat the apple.")] * n])
    (grandchild,) = again.new_tasks
    assert grandchild.generation == 2 and grandchild.parent_id == child.task_id
    assert grandchild.spec["initial_state"] == states[child.parent_id]
    assert again.rejected_counts["duplicate_text"] == 3  # the same text sampled 4 times


def test_stage_with_the_tiny_em_accounts_for_every_candidate(workdir, tw_simple_file,  # noqa: F811
                                                             run_cli):
    from dreamgym_cli.artifacts import read_manifest
    from dreamgym_cli.trajectories import read_tasks

    out = workdir / "T2.parquet"
    args = ["tasks", "evolve", "--em", workdir / "EM", "--rollouts", workdir / "S", "--pool",
            tw_simple_file, "--out", out, "--seeds-per-round", "2", "--candidates", "2",
            "--max-new-tokens", "12", "--json"]
    code, stdout, _ = run_cli(*args)
    assert code == 0
    result = json.loads(stdout)
    assert result["curriculum/seeds"] == 2 and len(result["seeds"]) == 2
    assert result["curriculum/candidates"] == 4
    assert sum(result["rejected_counts"].values()) + result["curriculum/valid_candidates"] == 4
    pool, evolved = read_tasks(tw_simple_file), read_tasks(out)
    assert evolved[:3] == pool and len(evolved) == 3 + result["curriculum/added"]
    assert all(t.origin == "generated" and t.parent_id in result["seeds"] for t in evolved[3:])
    if result["curriculum/added"] == 0:  # an untrained model rarely writes a valid task
        assert result["reason"] == "no candidate passed validation"
    manifest = read_manifest(out)
    assert manifest["stage"] == "tasks-evolve" and manifest["metrics"]["curriculum/episodes"] == 6
    assert manifest["metrics"]["curriculum/pool_size_before"] == 3
    assert set(manifest["inputs"]) == {"em", "rollouts", "pool"}
    code, stdout, _ = run_cli(*args)
    assert code == 0 and json.loads(stdout)["skipped"] is True


def test_swapped_generator_lands_valid_variations(workdir, tw_simple_file,  # noqa: F811
                                                 capsys):
    from dreamgym_cli.artifacts import read_manifest
    from dreamgym_cli.stages import evolve
    from dreamgym_cli.trajectories import read_tasks

    def generate(seeds, n, seed):
        return [[_tag(s.task.instruction + " Then, go west and examine the wooden door."),
                 _tag(s.task.instruction)][:n] for s in seeds]

    out = workdir / "T3.jsonl"
    config = evolve.EvolveConfig(em=workdir / "EM", rollouts=workdir / "E.jsonl",
                                 pool=tw_simple_file, out=out, candidates=2, outcome="return")
    result = evolve.run(config, generate=generate)
    evolved = read_tasks(out)
    new = [t for t in evolved if t.origin == "generated"]
    assert len(new) == result["curriculum/added"] == len(result["seeds"]) == 3
    assert {t.parent_id for t in new} == set(result["seeds"])
    assert all("initial_state" in t.spec and t.spec["initial_state"].startswith("Location:")
               for t in new)
    assert result["rejected_counts"]["copy_of_parent"] == 3
    assert result["curriculum/generated_fraction"] == 0.5
    manifest = read_manifest(out)
    assert len(manifest["examples"]) == 3
    assert all(e["instruction"].endswith("examine the wooden door.")
               for e in manifest["examples"])
    capsys.readouterr()
    evolve.render(result)
    shown = capsys.readouterr().out
    assert "Example 1" in shown and "parent:" in shown and "wooden door." in shown


def test_no_variance_leaves_the_pool_unchanged_and_says_why(workdir, tw_simple_file,  # noqa: F811
                                                            run_cli):
    from dreamgym_cli.trajectories import read_tasks

    out = workdir / "T4.parquet"  # one expert episode per game: every V is 0
    code, stdout, _ = run_cli("tasks", "evolve", "--em", workdir / "EM", "--rollouts",
                              workdir / "H.jsonl", "--pool", tw_simple_file, "--out", out,
                              "--json")
    assert code == 0
    result = json.loads(stdout)
    assert result["curriculum/added"] == 0 and result["curriculum/zero_variance_share"] == 1.0
    assert "no task of the pool has reward variance > 0" in result["reason"]
    assert read_tasks(out) == read_tasks(tw_simple_file)


def test_bad_input_exits_2(workdir, tw_simple_file, run_cli):  # noqa: F811
    common = ["--rollouts", workdir / "S", "--pool", tw_simple_file, "--out", workdir / "X.jsonl"]
    code, _, err = run_cli("tasks", "evolve", "--em", workdir / "EM", *common, "--outcome", "win")
    assert code == 2 and "outcome" in err
    code, _, err = run_cli("tasks", "evolve", "--em", workdir / "S", *common)
    assert code == 2 and "not an experience-model directory" in err
    code, _, err = run_cli("tasks", "evolve", "--em", workdir / "EM", "--rollouts",
                           workdir / "missing", "--pool", tw_simple_file, "--out",
                           workdir / "X.jsonl")
    assert code == 2 and "no such replay store" in err
    assert not (workdir / "X.jsonl").exists()


def test_task_generation_pairs_answer_with_sibling_tasks_of_the_same_start(workdir):
    """train-em's task-format examples: each real task's prompt, answered by other real tasks
    that start from the same state (all tw-simple games start in the same bedroom)."""
    from dreamgym_cli.curriculum.variation import (build_task_prompt, parse_candidate,
                                                   task_generation_pairs)
    from dreamgym_cli.experience.episodes import load_real_episodes
    from dreamgym_cli.store import ReplayStore

    episodes = load_real_episodes(ReplayStore.open(workdir / "S"))
    tasks = {t["task_id"]: t for t, _, _ in episodes}
    starts = {t["task_id"]: steps[0]["state"] for t, _, steps in episodes}
    pairs = task_generation_pairs(episodes, 1)
    assert len(pairs) == len(tasks) and len(tasks) >= 2
    for prompt, answer in pairs:
        sibling = parse_candidate(answer)
        owner = next(i for i, t in tasks.items() if f"## Task\n{t['instruction'].strip()}\n" in
                     prompt)
        assert sibling in {t["instruction"] for i, t in tasks.items() if i != owner}
        assert f"## Initial state\n{starts[owner]}" in prompt
        assert prompt.startswith(build_task_prompt.__globals__["TASK_PREAMBLE"])
    assert len(task_generation_pairs(episodes, 5)) == len(tasks) * (len(tasks) - 1)
    assert task_generation_pairs(episodes, 0) == []
