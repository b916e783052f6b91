"""The dream env's public face (predict, exclude, episode accessors, start states, EM opening) and
the env registry's dream names, on a tiny real model saved as an experience-model directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from dreamgym_cli.errors import InputError
from dreamgym_cli.schema import Task
from tests.dream_fixtures import untrained_em_dir

STATE = "Location: kitchen\nYou see a key.\nActions: look | take key | go north"


@pytest.fixture(scope="module")
def em_dir(tmp_path_factory) -> Path:
    return untrained_em_dir(tmp_path_factory, STATE)


def tasks(n: int) -> list[Task]:
    return [Task(task_id=f"t{i}", env="textworld", instruction=f"find the key {i}",
                 spec={"initial_state": STATE, "max_steps": 2}) for i in range(n)]


def test_predict_matches_the_step_it_stands_for(em_dir):
    from dreamgym_cli.envs.dream import DreamEnv, TransitionQuery

    stepping = DreamEnv(em_dir, max_retries=1, seed=5)
    stepping.reset_batch(tasks(2))
    results = stepping.step_batch(["look", "take key"])
    predicting = DreamEnv(em_dir, max_retries=1, seed=5)
    predictions = predicting.predict([TransitionQuery(task=t, state=STATE, action=a,
                                                      exclude=frozenset({"e1"}))
                                      for t, a in zip(tasks(2), ["look", "take key"])])
    assert [p.transition.next_state for p in predictions] == \
        [r.observation.text for r in results]
    assert [p.transition.reward for p in predictions] == [r.reward for r in results]
    assert all(isinstance(p.first_try_failed, bool) for p in predictions)
    for key in ("dream/retries", "dream/invalid"):  # counted alike (steps: only by stepping)
        assert predicting.metrics[key] == stepping.metrics[key]
    assert predicting.slots == []  # no episode was started
    stepping.close()
    predicting.close()


def test_episode_accessors_and_exclude(em_dir):
    from dreamgym_cli.envs.dream import DreamEnv

    env = DreamEnv(em_dir, max_retries=0, seed=0)
    with pytest.raises(ValueError, match="exclude"):
        env.reset_batch(tasks(2), exclude=[frozenset()])
    env.reset_batch(tasks(2), exclude=[frozenset({"a"}), frozenset({"b"})])
    assert [s.exclude for s in env.slots] == [frozenset({"a"}), frozenset({"b"})]
    assert not env.is_done(0) and env.episode_steps(0) == []
    env.end_episode(1)
    assert env.is_done(1)
    env.step_batch(["look", None])
    steps = env.episode_steps(0)
    assert len(steps) == 1 and steps[0]["action"] == "look" and steps[0]["state"] == STATE
    steps.clear()  # a copy: the episode keeps its steps
    assert len(env.episode_steps(0)) == 1 and env.episode_steps(1) == []
    env.close()


def test_start_states_model_and_store(em_dir):
    from dreamgym_cli.envs.dream import DreamEnv

    env = DreamEnv(em_dir, max_retries=0)
    starts = env.start_states(tasks(2))
    assert starts == {f"t{i}": (STATE, ("look", "take key", "go north")) for i in range(2)}
    backend, tokenizer = env.backend_and_tokenizer()
    assert backend is env.backend and tokenizer is env.tokenizer
    assert env.replay_store() is None
    env.close()


def test_open_experience_model_and_shared_weights(em_dir, tmp_path):
    from dreamgym_cli.envs.dream import DreamEnv, open_experience_model, read_em_settings

    with pytest.raises(InputError, match="not an experience-model directory") as info:
        read_em_settings(tmp_path, field="em")
    assert info.value.file == str(tmp_path) and info.value.field == "em"
    settings, model, tokenizer = open_experience_model(em_dir)
    assert settings == read_em_settings(em_dir) and settings.max_new_tokens == 12
    env = DreamEnv(em_dir, settings=settings, model=model, tokenizer=tokenizer,
                   max_new_tokens=4, max_retries=0)
    assert env.settings.max_new_tokens == 4 and settings.max_new_tokens == 12
    assert env.backend_and_tokenizer()[1] is tokenizer
    env.close()


def test_dream_names_and_real_envs():
    from dreamgym_cli.envs.real import make_real_env, real_env_names
    from dreamgym_cli.envs.registry import available_envs, is_dream_name

    assert is_dream_name("dream:EM") and not is_dream_name("textworld")
    assert not is_dream_name("dreamland") and not is_dream_name("agentgym:dream@x")
    assert "dream:..." in available_envs() and "dream:..." not in real_env_names()
    assert set(real_env_names()) < set(available_envs())
    with pytest.raises(InputError, match="unknown environment"):
        make_real_env("dream:EM")  # the dream env never resets a task's start from a dream


def test_batch_envs_speak_the_batch_protocol():
    from dreamgym_cli.envs.base import BatchEnv, Env
    from dreamgym_cli.envs.dream import DreamEnv
    from dreamgym_cli.envs.vector import VectorEnv

    for cls in (DreamEnv, VectorEnv):
        assert issubclass(cls, BatchEnv), cls
    assert issubclass(DreamEnv, Env)  # and the single-episode protocol, for batch size 1


class _CountingBackend:
    """Delegates to the env's real backend and records how many prompts each call generated."""

    def __init__(self, backend):
        self.backend, self.batches = backend, []

    def generate(self, prompts, params):
        self.batches.append(len(prompts))
        return self.backend.generate(prompts, params)

    def __getattr__(self, name):
        return getattr(self.backend, name)


def test_identical_queries_are_generated_once_at_temperature_zero(em_dir):
    from dreamgym_cli.envs.dream import DreamEnv

    cached = DreamEnv(em_dir, max_retries=0, seed=0)
    counting = cached.backend = _CountingBackend(cached.backend)
    plain = DreamEnv(em_dir, max_retries=0, seed=0, cache_size=0)
    four = [tasks(1)[0]] * 4  # a GRPO group: one task, four episodes, one start state
    cached.reset_batch(four)
    plain.reset_batch(four)
    actions = ["look", "look", "take key", "look"]
    got, want = cached.step_batch(actions), plain.step_batch(actions)
    assert [(r.observation.text, r.reward, r.done) for r in got] == \
        [(r.observation.text, r.reward, r.done) for r in want]
    assert counting.batches == [2]  # two distinct queries of four
    assert cached.metrics["dream/cache_hits"] == 2 and plain.metrics["dream/cache_hits"] == 0
    cached.reset_batch(four)  # the next iteration repeats one query: nothing is generated
    cached.step_batch(["take key", "take key", "take key", "take key"])
    assert counting.batches == [2] and cached.metrics["dream/cache_hits"] == 6
    assert cached.metrics["dream/steps"] == 8  # every step still counts as a dream step
    cached.close()
    plain.close()


def test_the_cache_keeps_apart_what_the_prompt_keeps_apart_and_is_bounded(em_dir):
    from dreamgym_cli.envs.dream import DreamEnv, TransitionQuery

    env = DreamEnv(em_dir, max_retries=0, seed=0, cache_size=2)
    task = tasks(1)[0]
    env.predict([TransitionQuery(task=task, state=STATE, action="look", exclude=frozenset({"a"})),
                 TransitionQuery(task=task, state=STATE, action="look", exclude=frozenset({"b"})),
                 TransitionQuery(task=tasks(2)[1], state=STATE, action="look")])
    assert env.metrics["dream/cache_hits"] == 0  # other skipped episodes, other instruction
    assert len(env._cache) == 2  # the oldest of three was dropped
    sampling = DreamEnv(em_dir, max_retries=0, seed=0, temperature=1.0)
    sampling.predict([TransitionQuery(task=task, state=STATE, action="look")] * 3)
    assert sampling.cache_size == 0 and sampling.metrics["dream/cache_hits"] == 0
    synthetic = DreamEnv(em_dir, max_retries=0, retrieve_synthetic=True)
    assert synthetic.cache_size == 0  # the store it retrieves from grows as it runs
    for e in (env, sampling, synthetic):
        e.close()


def test_retrieval_keys_choose_the_store_embeddings_searched(em_dir, tmp_path):
    import dataclasses

    from dreamgym_cli.envs.dream import DreamEnv, TransitionQuery, read_em_settings
    from dreamgym_cli.store import ReplayStore
    from dreamgym_cli.store.embed import vectors_id
    from tests.test_retrieval import append, episode

    with pytest.raises(InputError, match="did you mean 'full-bf16'"):
        DreamEnv(em_dir, retrieval_keys="full-bf")
    store = ReplayStore.open(tmp_path / "S", create=True)
    append(store, [episode(i) for i in range(2)])
    settings = dataclasses.replace(read_em_settings(em_dir), retrieval_k=1)
    env = DreamEnv(em_dir, store=store, settings=settings, max_retries=0,
                   retrieval_keys="full-bf16")
    env.predict([TransitionQuery(task=tasks(1)[0], state=STATE, action="look")])
    env.close()
    embedded = set(store.read_table("embeddings").column("embedder").to_pylist())
    assert embedded == {vectors_id("full-bf16")}  # today's vectors were never made
