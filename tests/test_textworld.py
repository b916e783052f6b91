"""The TextWorld adapter on real generated games: state format, rewards, expert, limits, paths."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import re

import pytest
from tw_fixtures import tw_games, tw_simple_file, tw_simple_tasks  # noqa: F401  (fixtures)

from dreamgym_cli.envs.base import Env, Observation, has_expert
from dreamgym_cli.envs.registry import available_envs, env_for_task, make_env
from dreamgym_cli.envs.textworld import TextWorldEnv, clean_feedback, split_description
from dreamgym_cli.envs.textworld_games import (
    default_data_dir, ensure_game, normalize_settings, settings_key,
)
from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task

RESET_PREFIXES = ["Location: ", "Exits: ", "Objects: ", "Inventory: ", "Actions: "]


def play_expert(env: TextWorldEnv, task: Task):
    observation = env.reset(task)
    results = []
    while True:
        results.append(env.step(env.expert_action()))
        if results[-1].done:
            return observation, results


# ----------------------------------------------------------------------------------------------
# settings


def test_settings_use_the_challenges_own_parser_and_defaults():
    assert normalize_settings("tw-simple", None) == {"rewards": "dense", "goal": "detailed",
                                                     "test": False}
    assert normalize_settings("tw-simple", "rewards=sparse,goal=none,test")["test"] is True
    cooking = normalize_settings("tw-cooking", "recipe=2,cook,cut")
    assert cooking["recipe"] == 2 and cooking["cook"] and cooking["cut"] and not cooking["open"]
    assert cooking["go"] == 1 and cooking["take"] == 0  # TextWorld's own defaults
    assert normalize_settings("tw-coin_collector", {"level": "7"}) == {"level": 7}


def test_settings_key_does_not_depend_on_key_order():
    a = settings_key("tw-simple", {"goal": "brief", "rewards": "balanced", "test": False})
    b = settings_key("tw-simple", {"test": False, "rewards": "balanced", "goal": "brief"})
    assert a == b == "rewards=balanced,goal=brief,test=false"


@pytest.mark.parametrize("challenge, settings, words", [
    ("tw-simple", "reward=dense", ["did you mean 'rewards'"]),
    ("tw-simple", "rewards=lots", ["invalid choice", "lots"]),
    ("tw-coin_collector", "level=high", ["invalid int value"]),
    ("tw-simple", "test=maybe", ["true or false"]),
    ("tw-simpel", None, ["did you mean 'tw-simple'"]),
])
def test_bad_settings_are_input_errors(challenge, settings, words):
    with pytest.raises(InputError) as e:
        normalize_settings(challenge, settings)
    assert all(w in str(e.value) for w in words), str(e.value)


# ----------------------------------------------------------------------------------------------
# the state and the episode


def test_reset_and_step_states_have_the_fixed_line_format(tw_simple_tasks):
    env = TextWorldEnv()
    try:
        observation = env.reset(tw_simple_tasks[0])
        lines = observation.text.split("\n")
        assert [line[: len(p)] for line, p in zip(lines, RESET_PREFIXES)] == RESET_PREFIXES
        assert len(lines) == len(RESET_PREFIXES)
        assert "$$" not in observation.text and "-=" not in observation.text  # no banner/header
        assert lines[-1] == "Actions: " + " | ".join(observation.admissible)
        # look/inventory/examine are left out of the list (they never change the game)
        assert observation.admissible and not any(
            a in ("look", "inventory") or a.startswith("examine ") for a in observation.admissible)
        step = env.step(env.expert_action())
        step_lines = step.observation.text.split("\n")
        assert step_lines[0].startswith("Feedback: ") and len(step_lines[0]) > len("Feedback: ")
        assert [line[: len(p)] for line, p in zip(step_lines[1:], RESET_PREFIXES)] == \
            RESET_PREFIXES
        assert ">" not in step_lines[0] and "/" not in step_lines[0]  # no prompt, no status line
        assert all(line == " ".join(line.split()) for line in step_lines)  # collapsed
        assert observation.info["objective"] == tw_simple_tasks[0].instruction
    finally:
        env.close()


def test_expert_wins_every_tw_simple_game_and_rewards_sum_to_the_score(tw_simple_tasks):
    env = make_env("textworld")
    assert isinstance(env, Env) and has_expert(env)
    try:
        for task in tw_simple_tasks:
            _, results = play_expert(env, task)
            final = results[-1]
            assert final.done and final.success is True and final.info["won"] is True
            assert sum(r.reward for r in results) == final.info["score"] == final.info["max_score"]
            assert [r.success for r in results[:-1]] == [False] * (len(results) - 1)
            assert all(not r.done for r in results[:-1])
            assert "Feedback:" in final.observation.text and "RESTART" not in \
                final.observation.text
    finally:
        env.close()


def test_step_limit_ends_the_episode_as_a_failure(tw_simple_tasks):
    env = TextWorldEnv(max_steps=2)
    try:
        env.reset(tw_simple_tasks[0])
        first = env.step("look")
        second = env.step("look")
        assert not first.done
        assert second.done and second.success is False and second.info["truncated"] is True
        with pytest.raises(RuntimeError):
            env.step("look")
    finally:
        env.close()
    limited = dataclasses.replace(tw_simple_tasks[1], spec={**tw_simple_tasks[1].spec,
                                                            "max_steps": 1})
    env = TextWorldEnv()
    try:
        env.reset(limited)
        assert env.step("inventory").done
    finally:
        env.close()


def test_feedback_and_description_cleaning():
    raw = "\nYou open it.\n\nYour score has just gone up by one point.\n\n>    -= Bedroom =-1/2"
    assert clean_feedback(raw) == "You open it. Your score has just gone up by one point."
    end = "\nYou win.\n\n   *** The End ***\n\nYou scored 8.\nWould you like to RESTART...\n>  x"
    assert clean_feedback(end) == "You win."
    assert split_description("-= Living Room =-\nA  room.\n\nA door.") == ("Living Room",
                                                                          "A room. A door.")
    # a room description as the reply (after a move) becomes one short sentence
    moved = "\n-= Kitchen =-\nA  small kitchen.\n\nYour score has just gone up by one point.\n\n> "
    assert clean_feedback(moved, "-= Kitchen =-\nA small kitchen.") == \
        "You are in the Kitchen. Your score has just gone up by one point."


# ----------------------------------------------------------------------------------------------
# game files: escapes, regeneration, concurrency


def test_game_path_escaping_the_data_dir_is_refused(tw_simple_tasks, tmp_path):
    task = tw_simple_tasks[0]
    outside = tmp_path / "outside"
    outside.mkdir()
    data_dir = tmp_path / "data"
    (data_dir / "textworld").mkdir(parents=True)
    os.symlink(outside, data_dir / "textworld" / "link")
    env = TextWorldEnv(data_dir=data_dir)
    for game in ("../outside/x.z8", "/etc/passwd", "textworld/link/seed-1.z8"):
        bad = dataclasses.replace(task, spec={**task.spec, "game": game})
        with pytest.raises(InputError, match="outside the data directory"):
            env.reset(bad)
    assert not any(outside.iterdir())  # nothing was written outside


def _reset_in(data_dir: str, task: Task) -> str:
    env = TextWorldEnv(data_dir=data_dir)
    try:
        return env.reset(task).text
    finally:
        env.close()


def test_missing_game_regenerated_by_two_processes_at_once(tw_simple_tasks, tmp_path):
    """A task file moved to a machine without its games: two processes reset it at once; one
    generates the game (temp dir + rename, under a lock), the other waits; both see the very
    game the task file was made from."""
    task = tw_simple_tasks[0]  # its game lives in DREAMGYM_HOME, not in tmp_path
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        texts = pool.starmap(_reset_in, [(str(tmp_path), task), (str(tmp_path), task)])
    assert texts[0] == texts[1] == _reset_in(str(default_data_dir()), task)
    game_dir = (tmp_path / task.spec["game"]).parent
    assert sorted(p.name for p in game_dir.iterdir() if not p.name.startswith(".")) == \
        ["seed-1.json", "seed-1.ni", "seed-1.z8"]
    assert not [p for p in game_dir.iterdir() if ".tmp-" in p.name]
    assert ensure_game(tmp_path, "tw-simple", task.spec["settings"], 1) == (task.spec["game"],
                                                                            False)


@pytest.mark.parametrize("challenge, settings", [
    ("tw-coin_collector", "level=2"),
    ("tw-treasure_hunter", "level=2"),
    ("tw-cooking", "recipe=1,take=1,go=1,open,cut"),
])
def test_other_challenges_generate_reset_and_the_expert_wins(challenge, settings, tw_games):
    settings = normalize_settings(challenge, settings)
    rel, _ = ensure_game(tw_games, challenge, settings, 1)
    task = Task(task_id=f"{challenge}/seed-1", env="textworld", instruction="",
                spec={"challenge": challenge, "settings": settings, "seed": 1, "game": rel,
                      "max_steps": 100})
    env = env_for_task(task)
    try:
        observation, results = play_expert(env, task)
        assert isinstance(observation, Observation) and observation.admissible
        assert re.match(r"Location: \S", observation.text.split("\n")[0])
        assert results[-1].success is True
        assert sum(r.reward for r in results) == results[-1].info["max_score"]
    finally:
        env.close()


def test_registry_names_and_did_you_mean():
    assert "textworld" in available_envs()
    with pytest.raises(InputError, match="did you mean 'textworld'"):
        make_env("textwrld")
    with pytest.raises(InputError, match="unknown environment 'dreem:EM'"):
        make_env("dreem:EM")  # an unknown prefix
