"""`dreamgym rollout`: run a policy in an env and append its episodes to the replay store.

`source=synthetic` for the dream env, `real` for a real env; `policy` = the policy dir's name.
The store's append is atomic, and a run record goes to `S/manifests/rollout-*.json`.

Episode ids are a function of the policy's and the task file's contents, the env and the
sampling options (seed included): a rerun samples the same episodes under the same ids, so the
store skips them as duplicates rather than holding them twice, and everything downstream that
splits by episode id (train-em's held-out episodes) splits the same way. More episodes of the
same policy take another `--seed`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from dreamgym_cli.config import option, require_paths, to_dict
from dreamgym_cli.errors import InputError


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    policy: Path = option(None, help="Policy directory (from train-agent).")
    env: str | None = option(None, help="dream:<EM dir> or a real env (default: the tasks' env).")
    tasks: Path = option(None, help="Task file.")
    store: Path = option(None, help="Replay store to append the episodes to.")
    episodes_per_task: int = option(2, help="Episodes per task.")
    max_steps_per_episode: int = option(8, help="Turns per episode before it counts as failed.")
    temperature: float = option(1.0, help="Sampling temperature (0: greedy).")
    action_interface: str = option("free", help="free: the env gets the generated action as "
                                   "is; listed: the most similar listed action.")
    workers: int | None = option(None, help="Real env worker processes (0: in process).")
    ray: str | None = option(None, help="Env workers as Ray actors: 'local' starts Ray here, "
                             "else a cluster address (e.g. 'auto').")
    seed: int = option(0, help="Seed for sampling.")

    def __post_init__(self):
        require_paths(self, "policy", "tasks", "store")
        for name in ("episodes_per_task", "max_steps_per_episode"):
            if getattr(self, name) < 1:
                raise InputError(f"expected >= 1, got {getattr(self, name)}", field=name)


def id_namespace(config: RolloutConfig, env_name: str) -> str:
    """What this run's episodes are a function of (see the module docstring)."""
    from dreamgym_cli.artifacts import content_hash

    sampling = {k: v for k, v in to_dict(config).items()
                if k not in ("policy", "tasks", "store", "env", "workers", "ray")}
    return json.dumps({"policy": content_hash(config.policy), "tasks": content_hash(config.tasks),
                       "env": env_name, **sampling}, sort_keys=True, default=str)


def run(config: RolloutConfig, progress=None) -> dict[str, Any]:
    from dreamgym_cli.artifacts import write_run_record
    from dreamgym_cli.envs.registry import is_dream_name
    from dreamgym_cli.rl.policy import PolicySettings
    from dreamgym_cli.rl.rollout import append_to_store, episode_records, rollout_metrics
    from dreamgym_cli.rl.session import PolicySession
    from dreamgym_cli.rl.task_pool import read_task_pool, tasks_env
    from dreamgym_cli.store import ReplayStore

    PolicySettings.load(config.policy)
    tasks = read_task_pool(config.tasks)
    env_name = config.env or tasks_env(tasks, config.tasks)
    store = ReplayStore.open(config.store)
    name = config.policy.resolve().name
    with PolicySession.from_policy_dir(
            config.policy, env_name, temperature=config.temperature,
            max_turns=config.max_steps_per_episode, seed=config.seed,
            action_interface=config.action_interface,
            env_options={"max_steps": config.max_steps_per_episode, "workers": config.workers,
                         "store": store, "seed": config.seed, "policy_name": name,
                         "ray": config.ray}) as session:
        episodes = session.run(tasks, group_size=config.episodes_per_task, progress=progress,
                               id_namespace=id_namespace(config, env_name))
    source = "synthetic" if is_dream_name(env_name) else "real"
    added = append_to_store(store, episode_records(episodes, source, name))
    metrics = {**rollout_metrics(episodes), "store/episodes_added": added, "source": source,
               "env": env_name}
    write_run_record(store.path / "manifests", "rollout", to_dict(config), metrics,
                     outputs=[str(store.path)])
    return {"store": str(config.store), **metrics}
