"""`--config FILE` through the real CLI: file values are used, flags override them, a bad key exits 2
naming the file and the key. Here for `ingest`, the stage that gained the option last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_ingest import episodes_file  # noqa: F401  (fixture: canonical episodes)
from tw_fixtures import tw_games  # noqa: F401  (fixture)

from dreamgym_cli.config import build


def _ingest(run_cli, *args) -> dict:
    """Run ingest with --json; the config its manifest records."""
    code, out, err = run_cli("ingest", *args, "--json")
    assert code == 0, err
    return json.loads(Path(json.loads(out)["manifest"]).read_text())["config"]


def test_ingest_takes_its_options_from_a_config_file(tmp_path, episodes_file, run_cli):
    rejects = tmp_path / "R.jsonl"
    config = tmp_path / "ingest.yaml"
    config.write_text(f"format: canonical\nbatch-steps: 7\non_error: skip\nrejects: {rejects}\n")

    recorded = _ingest(run_cli, episodes_file, "--store", tmp_path / "S1", "--config", config)
    assert recorded["format"] == "canonical" and recorded["batch_steps"] == 7
    assert recorded["on_error"] == "skip" and recorded["rejects"] == str(rejects)
    assert rejects.is_file()  # a path from the file is a path: the rejects file is written

    recorded = _ingest(run_cli, episodes_file, "--store", tmp_path / "S2", "--config", config,
                       "--batch-steps", "3", "--on-error", "fail", "--format", "auto")
    assert recorded["batch_steps"] == 3 and recorded["on_error"] == "fail"
    assert recorded["format"] == "auto" and recorded["rejects"] == str(rejects)


def test_ingest_defaults_without_a_config_file(tmp_path, episodes_file, run_cli):
    recorded = _ingest(run_cli, episodes_file, "--store", tmp_path / "S")
    assert (recorded["format"], recorded["batch_steps"], recorded["on_error"]) == ("auto", 50_000,
                                                                                  "fail")
    assert recorded["embed"] is False and recorded["rejects"] is None


def test_ingest_config_with_an_unknown_key_exits_2(tmp_path, episodes_file, run_cli):
    config = tmp_path / "ingest.yaml"
    config.write_text("batch_step: 7\n")
    code, out, err = run_cli("ingest", episodes_file, "--store", tmp_path / "S", "--config", config)
    assert code == 2 and out == ""
    message = " ".join(err.split())
    assert str(config) in message and "batch_step" in message
    assert "did you mean 'batch_steps'" in message
    assert not (tmp_path / "S").exists()  # nothing was started


def test_paths_from_a_file_are_paths(tmp_path):
    from dreamgym_cli.stages.ingest import IngestConfig

    config = tmp_path / "ingest.yaml"
    config.write_text("files: [a.jsonl, b.jsonl]\nstore: S\nrejects: R.jsonl\nenv: textworld\n")
    c = build(IngestConfig, config)
    assert c.files == (Path("a.jsonl"), Path("b.jsonl")) and c.store == Path("S")
    assert c.rejects == Path("R.jsonl") and c.env == "textworld"


def test_a_config_file_sets_options_that_have_defaults(tmp_path, run_cli, tw_games):  # noqa: F811
    """`tasks make` seeds/split and `collect` policy/episodes-per-task from --config: their CLI
    defaults must not override the file (flags given on the command line still do)."""
    from dreamgym_cli.trajectories import read_episodes, read_tasks

    make = tmp_path / "make.yaml"
    make.write_text("seeds: 2-3\nsplit: valid\nchallenge: tw-simple\n")
    tasks = tmp_path / "T.jsonl"
    code, _, err = run_cli("tasks", "make", "--env", "textworld", "--out", tasks,
                           "--config", make)
    assert code == 0, err
    made = read_tasks(tasks)
    assert len(made) == 2 and {t.split for t in made} == {"valid"}

    collect = tmp_path / "collect.yaml"
    collect.write_text("policy: random\nepisodes_per_task: 2\nmax_steps: 3\n")
    out = tmp_path / "E.jsonl"
    code, _, err = run_cli("collect", "--tasks", tasks, "--out", out, "--config", collect)
    assert code == 0, err
    episodes = list(read_episodes(out))
    assert len(episodes) == 4 and {e.episode["policy"] for e in episodes} == {"random"}
    code, _, err = run_cli("collect", "--tasks", tasks, "--out", tmp_path / "E2.jsonl",
                           "--config", collect, "--policy", "expert", "--episodes-per-task", "1")
    assert code == 0, err
    episodes = list(read_episodes(tmp_path / "E2.jsonl"))
    assert len(episodes) == 2 and {e.episode["policy"] for e in episodes} == {"expert"}


def test_train_agent_file_nests_keys_by_concern(tmp_path):
    """`rl:`, `sft:`, `rollout:`, `curriculum:` sections set the same fields as flat keys (the
    manifest stays flat); the `curriculum` flag keeps its flat boolean form."""
    from dreamgym_cli.config import to_dict
    from dreamgym_cli.stages.train_agent import TrainAgentConfig

    nested = tmp_path / "nested.yaml"
    nested.write_text("algo: grpo\nbase: tiny:1m\ntasks: T.parquet\nout: P\n"
                      "rl: {group-size: 8, lr: 1.0e-5, kl_coef: 0.0}\n"
                      "rollout: {temperature: 0.7, rollout_sync_dir: W}\n"
                      "curriculum: {lambda: 0.5, candidates: 2}\n"
                      "sft: {batch_size: 4}\n")
    flat = tmp_path / "flat.yaml"
    flat.write_text("algo: grpo\nbase: tiny:1m\ntasks: T.parquet\nout: P\ngroup_size: 8\n"
                    "lr: 1.0e-5\nkl_coef: 0.0\ntemperature: 0.7\nrollout_sync_dir: W\n"
                    "lambda_: 0.5\ncandidates: 2\nbatch_size: 4\ncurriculum: false\n")
    a, b = build(TrainAgentConfig, nested), build(TrainAgentConfig, flat)
    assert a.group_size == 8 and a.lambda_ == 0.5 and a.rollout_sync_dir == Path("W")
    assert to_dict(a) == {**to_dict(b), "curriculum": True}  # b turns the curriculum off
    assert build(TrainAgentConfig, nested, group_size=2).group_size == 2  # a flag still wins


def test_a_key_outside_its_section_or_set_twice_is_named(tmp_path, run_cli):
    from dreamgym_cli.errors import InputError
    from dreamgym_cli.stages.train_agent import TrainAgentConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text("base: tiny:1m\ntasks: T\nout: P\nrl: {grup_size: 8}\n")
    with pytest.raises(InputError) as refused:
        build(TrainAgentConfig, bad)
    assert refused.value.field == "rl.grup_size"
    assert "did you mean 'group_size'" in str(refused.value)
    twice = tmp_path / "twice.yaml"
    twice.write_text("base: tiny:1m\ntasks: T\nout: P\nlr: 0.1\nrl: {lr: 0.2}\n")
    code, out, err = run_cli("train-agent", "--config", twice, "--out", tmp_path / "P")
    assert code == 2 and "'lr' is set twice" in " ".join(err.split()) and "rl.lr" in err
