"""One policy's rollouts in one batch env: the piece `rollout`, `eval` and train-agent's
validation share.

    with PolicySession.from_policy_dir(policy_dir, env_name, temperature=0.0, max_turns=8,
                                       seed=0, env_options={"max_steps": 8}) as session:
        episodes = session.run(tasks, group_size=2)

`from_policy_dir` loads the policy (weights, tokenizer, `policy.json`), builds its
`RolloutSettings` (how the policy prompts, from its saved settings; how it samples, from the
caller) and then opens the batch env; `open` does the same for a policy already in memory (the
learner during training). `close` (or leaving the `with`) closes the env.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamgym_cli.rl.rollout import EpisodeRollout, RolloutSettings, open_batch_env, run_rollouts


def rollout_settings(policy, *, temperature: float, max_turns: int | None, seed: int,
                     action_interface: str) -> RolloutSettings:
    """The rollout settings of a policy: its prompt format (thinking, history budget, longest
    answer, from its `PolicySettings`) with the caller's sampling and turn limit."""
    return RolloutSettings(think=policy.think, history_budget_tokens=policy.history_budget_tokens,
                           max_new_tokens=policy.max_new_tokens, temperature=temperature,
                           max_turns=max_turns, seed=seed, action_interface=action_interface)


@dataclasses.dataclass
class PolicySession:
    """A policy (generation backend + tokenizer + rollout settings) and the batch env it plays."""

    env: Any
    backend: Any
    tokenizer: Any
    settings: RolloutSettings
    env_name: str

    @classmethod
    def open(cls, env_name: str, backend, tokenizer, settings: RolloutSettings, *,
             env_options: dict[str, Any] | None = None) -> PolicySession:
        """A session for a policy in memory; `env_options` go to `rl.rollout.open_batch_env`
        (max_steps, workers, store, seed, policy_name, retrieve_synthetic, ray)."""
        return cls(open_batch_env(env_name, **(env_options or {})), backend, tokenizer, settings,
                   env_name)

    @classmethod
    def from_policy_dir(cls, policy_dir: str | Path, env_name: str, *, temperature: float,
                        max_turns: int | None, seed: int, action_interface: str = "free",
                        env_options: dict[str, Any] | None = None) -> PolicySession:
        """Load the policy of `policy_dir`, build its rollout settings, then open the env."""
        from dreamgym_cli.llm.generate import open_backend
        from dreamgym_cli.rl.policy import load_policy

        model, tokenizer, policy = load_policy(policy_dir)
        backend = open_backend("transformers", model=model, tokenizer=tokenizer)
        settings = rollout_settings(policy, temperature=temperature, max_turns=max_turns,
                                    seed=seed, action_interface=action_interface)
        return cls.open(env_name, backend, tokenizer, settings, env_options=env_options)

    def run(self, tasks, *, group_size: int = 1,
            progress: Callable[[int, int, dict], None] | None = None,
            id_namespace: str | None = None) -> list[EpisodeRollout]:
        """`group_size` episodes of every task. progress(turns done, turns done + episodes still
        running, {}) after every turn: a stage's progress callback. `id_namespace`: reproducible
        episode ids (`rl.rollout.episode_ids`)."""
        return run_rollouts(self.env, self.backend, self.tokenizer, list(tasks), self.settings,
                            group_size=group_size, id_namespace=id_namespace,
                            progress=(lambda turn, running: progress(turn, turn + running, {}))
                            if progress else None)

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> PolicySession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
