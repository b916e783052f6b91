"""Where a task starts: one rule (`envs.dream.resolve_start_state`) for the dream env (and so
train-agent's curriculum, which asks it) and for `tasks evolve` (store or trajectory file).

The store below is one where they used to disagree: `tasks evolve` took a task's own t=0 state
even from a synthetic episode and preferred the spec's state to the parent's, the dream env took
real t=0 states only, the parent's before the spec's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dreamgym_cli.schema import Task, validate_episode
from tests.dream_fixtures import untrained_em_dir

REAL = "Location: hall\nActions: take key | go east"  # the seed's real start
SYNTHETIC = "Location: dream hall\nActions: fly"  # a dream episode's start (not evidence)
SPEC = "Location: spec hall\nActions: open door"  # a state written into a spec
SEED = Task("seed", "textworld", "take the key", {"game": "g.z8"})
CHILD = Task("seed/gen-1", "textworld", "take the key twice", {"game": "g.z8",
             "initial_state": SPEC}, origin="generated", parent_id="seed", generation=1)
CHILD2 = Task("seed/gen-2", "textworld", "take the key, go east",
              {"game": "g.z8", "initial_state": SPEC}, origin="generated", parent_id="seed",
              generation=1)
LONELY = Task("lonely", "textworld", "open the door", {"game": "h.z8", "initial_state": SPEC})
POOL = [SEED, CHILD, CHILD2, LONELY]
EXPECTED = {  # (what tasks evolve said before; the dream env said what is expected now)
    "seed": REAL,  # (REAL)
    "seed/gen-1": REAL,  # (SYNTHETIC: its own dream episode)
    "seed/gen-2": REAL,  # (SPEC: the spec before the parent)
    "lonely": SPEC,  # (SYNTHETIC)
}


def episode(task: Task, n: int, source: str, state: str, reward: float):
    return validate_episode({
        "episode_id": f"{task.task_id}-{source}-{n}", "task": task.to_row(), "source": source,
        "policy": "p", "steps": [{"t": 0, "state": state, "admissible": None, "action": "look",
                                  "next_state": state, "reward": reward, "done": True,
                                  "success": reward > 0}]})


RECORDS = [episode(SEED, 0, "real", REAL, 1.0), episode(SEED, 1, "real", REAL, 0.0),
           episode(CHILD, 0, "synthetic", SYNTHETIC, 1.0),
           episode(CHILD, 1, "synthetic", SYNTHETIC, 0.0),
           episode(LONELY, 0, "synthetic", SYNTHETIC, 1.0),
           episode(LONELY, 1, "synthetic", SYNTHETIC, 0.0)]  # seed/gen-2 has no episode


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    from dreamgym_cli.store import ReplayStore

    path = tmp_path_factory.mktemp("starts") / "S"
    ReplayStore.open(path, create=True).append_episodes(RECORDS)
    return path


@pytest.fixture(scope="module")
def em_dir(tmp_path_factory) -> Path:
    return untrained_em_dir(tmp_path_factory, REAL)


def expected_starts() -> dict[str, tuple[str, tuple[str, ...]]]:
    from dreamgym_cli.envs.dream import admissible_from_state

    return {k: (s, tuple(admissible_from_state(s))) for k, s in EXPECTED.items()}


def test_the_rule_on_its_own():
    from dreamgym_cli.envs.dream import resolve_start_state, start_state

    known = {"seed": start_state(REAL), "empty": ("", ())}
    assert resolve_start_state(SEED, known) == (REAL, ("take key", "go east"))
    assert resolve_start_state(CHILD, known) == start_state(REAL)  # the parent before the spec
    assert resolve_start_state(LONELY, known) == start_state(SPEC)
    assert resolve_start_state(Task("x", "textworld", "i", {}), known) is None


def test_dream_env_and_tasks_evolve_start_a_task_in_the_same_state(store_dir, em_dir,
                                                                  tmp_path):
    from dreamgym_cli.curriculum.variation import evolve_pool, seed_contexts
    from dreamgym_cli.envs.dream import DreamEnv
    from dreamgym_cli.stages.evolve import read_rollouts
    from dreamgym_cli.store import ReplayStore
    from dreamgym_cli.trajectories import write_episodes

    env = DreamEnv(em_dir, store=store_dir, max_retries=0)
    dream = env.start_states(POOL)  # what train-agent's curriculum hands evolve_pool
    env.close()
    assert dream == expected_starts()

    ids = {t.task_id for t in POOL}
    write_episodes(tmp_path / "R.jsonl", RECORDS)
    for rollouts in (store_dir, tmp_path / "R.jsonl"):  # `tasks evolve --rollouts`
        _, _, states, _ = read_rollouts(rollouts, ids, "return", "all")
        seeds = seed_contexts(POOL, {}, states)
        assert {s.task.task_id: (s.initial_state, s.admissible) for s in seeds} == dream

    seen = {}

    def generate(seeds, n, seed):  # the seeds evolve_pool builds from the store
        seen.update({s.task.task_id: (s.initial_state, s.admissible) for s in seeds})
        return [[] for _ in seeds]

    variances = {t.task_id: 0.25 for t in POOL}
    evolve_pool(None, POOL, variances, seeds_per_round=4, store=ReplayStore.open(store_dir),
                generate=generate)
    assert seen == dream
    seen.clear()
    evolve_pool(None, POOL, variances, seeds_per_round=4, initial_states=dream,
                generate=generate)  # as the trainer calls it
    assert seen == dream
