"""What the RL loop trains (`Learner`: the policy, its optimizer, its KL reference and PPO value
head) and the knobs it trains with (`RLSettings`, checked by `check_settings`)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch

from dreamgym_cli.rl import algorithms as alg

ALGORITHMS = ("grpo", "ppo")
OUTCOMES = ("return", "success")


@dataclasses.dataclass(frozen=True)
class RLSettings:
    algo: str = "grpo"
    iterations: int = 10
    batch_tasks: int = 4  # task draws per iteration
    group_size: int = 4  # episodes per task draw (GRPO's G)
    lr: float = 1e-5
    kl_coef: float = 0.05
    kl_estimator: str = "k3"
    clip_eps: float = 0.2
    ppo_epochs: int = 1
    mini_batches: int = 4  # optimizer steps per pass over an iteration's rollouts
    warmup_steps: int = 4  # linear lr warm-up over the first optimizer steps of the run
    micro_batch_turns: int = 8
    entropy_coef: float = 0.0
    value_coef: float = 0.5
    value_clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    grad_clip: float = 1.0
    outcome: str = "success"  # GRPO's episode reward: 1/0 success, or its return
    temperature: float = 1.0  # rollout sampling temperature: log-probs are scored at it
    invalid_penalty: float = 0.0  # subtracted per off-list or malformed action of an episode
    value_detach: bool = True  # PPO: the critic reads the trunk without training it
    value_lr: float = 1e-3  # PPO: the value head's own learning rate
    loss_agg: str = "token-mean"
    checkpoint_every: int = 1
    seed: int = 0
    max_real_steps: int | None = None  # sim-to-real budget of real env steps
    rescore_logprobs: bool = False  # old log-probs from the trainer's forward, not the engine's



@dataclasses.dataclass
class Learner:
    """What the loop trains: the policy, its optimizer, its reference and (PPO) value head."""

    model: Any
    tokenizer: Any
    backend: Any
    optimizer: torch.optim.Optimizer
    reference: Any  # a frozen copy of the initial model, or None (LoRA: adapters disabled)
    value_head: torch.nn.Module | None = None
    updates: int = 0  # optimizer steps taken (drives the lr warm-up; kept in checkpoints)

    @property
    def pad_id(self) -> int:
        t = self.tokenizer
        return t.pad_token_id if t.pad_token_id is not None else (t.eos_token_id or 0)

    def policy_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def parameters(self) -> list[torch.nn.Parameter]:
        params = self.policy_parameters()
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        return params


def check_settings(settings: RLSettings) -> None:
    from dreamgym_cli.errors import InputError, unknown_name

    if settings.algo not in ALGORITHMS:
        raise unknown_name("RL algorithm", settings.algo, ALGORITHMS, field="algo")
    if settings.outcome not in OUTCOMES:
        raise unknown_name("outcome", settings.outcome, OUTCOMES, field="outcome")
    if settings.kl_estimator not in alg.KL_KINDS:
        raise unknown_name("KL estimator", settings.kl_estimator, alg.KL_KINDS,
                           field="kl_estimator")
    for name in ("iterations", "batch_tasks", "group_size", "ppo_epochs", "mini_batches",
                 "micro_batch_turns"):
        if getattr(settings, name) < 1:
            raise InputError(f"expected an integer >= 1, got {getattr(settings, name)}",
                             field=name)
    if settings.max_real_steps is not None and settings.max_real_steps < 1:
        raise InputError(f"expected >= 1, got {settings.max_real_steps}", field="max_real_steps")
    json.dumps(dataclasses.asdict(settings))  # settings go into manifests
