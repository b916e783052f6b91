"""`dreamgym train-agent --algo sft|grpo|ppo`: make or improve a policy directory.

sft   behaviour cloning on the store's real episodes (`--sft-data`: the expert's episodes when
      the store has any, else successful ones without their off-list actions), with prompts
      built exactly as the rollout builds them, so the policy acts in the same format.
grpo  GRPO in `--env` (`dream:EM` or a real env) from `--init POLICY` or `--base`.
ppo   PPO (value head, GAE over turns) on the same path.

With a real env, `--max-real-steps N` is the sim-to-real budget: training stops when N real env
steps are spent (never more) and `real_steps_used` is in the manifest's metrics. Episodes from RL
rollouts go into the store (dream: `source=synthetic`, the paper's co-evolving replay buffer)
unless `--no-enrich`.

In a dream env the curriculum is on unless `--no-curriculum` (DESIGN §8,
`curriculum/sampler.py`): batches hold at most `--lambda` generated tasks, and every
`--curriculum-every` iterations the experience model writes variations of the
`--seeds-per-round` tasks with the largest reward variance (`--candidates` each). The
`curriculum/*` metrics are in metrics.jsonl per iteration (on or off); the tasks a run generated
are in `generated_tasks.jsonl` of the policy directory and, with their parents, in the manifest.

Under `accelerate launch` (docs/scale.md) every algorithm runs on N processes with the global
batch unchanged: sft splits each `--batch-size` batch; grpo/ppo split each iteration's
`--batch-tasks` draws (whole groups per process), count `--max-real-steps` over all of them and
learn from all the episodes (DDP). Rank 0 alone writes the policy, metrics, checkpoints and store.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dreamgym_cli.artifacts import ArtifactRun
from dreamgym_cli.config import option, pick, to_dict
from dreamgym_cli.errors import InputError

ALGOS = ("sft", "grpo", "ppo")
NOT_IN_FINGERPRINT = ("resume", "force", "checkpoint_every", "workers", "ray", "rollout_sync_dir")

# The fields each part's settings take under their own names, one group per concern. The config
# stays flat (the CLI flags, config-file keys and manifests name these fields); each settings
# object is built from its group by one method of TrainAgentConfig below.
SFT_FIELDS = ("batch_size", "epochs", "max_steps", "seed")
RL_FIELDS = ("algo", "iterations", "batch_tasks", "group_size", "kl_coef", "kl_estimator",
             "clip_eps", "ppo_epochs", "mini_batches", "warmup_steps", "micro_batch_turns",
             "entropy_coef", "value_coef", "value_lr", "value_detach", "gamma", "lam", "outcome",
             "temperature", "invalid_penalty", "checkpoint_every", "seed", "max_real_steps")
CURRICULUM_FIELDS = ("seeds_per_round", "candidates", "zero_variance_weight", "algo", "outcome",
                     "seed")
POLICY_FIELDS = ("think", "history_budget_tokens", "max_new_tokens")  # None: the init policy's


# The concerns a config file may nest its keys under (`rl: {group_size: 8}`); flags, manifests
# and flat files name the same fields directly.
FILE_SECTIONS = {
    "sft": ("max_steps", "epochs", "batch_size", "sft_data", "sft_all"),
    "rl": ("group_size", "batch_tasks", "lr", "kl_coef", "kl_estimator", "clip_eps", "ppo_epochs",
           "mini_batches", "warmup_steps", "micro_batch_turns", "entropy_coef", "value_coef",
           "value_lr", "value_detach", "gamma", "lam", "outcome", "invalid_penalty",
           "checkpoint_every"),
    "rollout": ("max_steps_per_episode", "max_real_steps", "max_new_tokens",
                "history_budget_tokens", "think", "temperature", "action_interface",
                "rollout_server", "rollout_sync_dir"),
    "curriculum": ("curriculum", "curriculum_every", "lambda_", "seeds_per_round", "candidates",
                   "zero_variance_weight"),
    "validation": ("eval_tasks", "eval_every", "eval_turns"),
}


@dataclasses.dataclass(frozen=True)
class TrainAgentConfig:
    SECTIONS = FILE_SECTIONS  # not a field: config.file_values reads it
    # -- the run: what to train, from what, on what
    algo: str = option("grpo", help="sft (behaviour cloning), grpo or ppo.")
    out: Path = option(None, help="Policy directory to write.")
    store: Path | None = option(None, help="Replay store: SFT data; RL episodes are added to it.")
    base: str | None = option(None, help="Base model: tiny:<1m|10m|30m> or a local HF dir.")
    init: Path | None = option(None, help="Start from this policy directory.")
    env: str | None = option(None, help="dream:<EM dir> or a real env (default: the tasks' env).")
    tasks: Path | None = option(None, help="Task file (grpo/ppo).")
    iterations: int = option(10, help="RL iterations (rollout + update each).")
    # -- sft (`sft_settings`)
    max_steps: int | None = option(None, help="SFT: stop after this many optimizer steps.")
    epochs: float = option(3.0, help="SFT: passes over the examples (when no --max-steps).")
    batch_size: int = option(8, help="SFT: examples per optimizer step.")
    sft_data: str = option("auto", help="SFT examples: auto (expert episodes if any, else "
                           "successful), expert, successful (without off-list actions) or all.")
    sft_all: bool = option(False, help="Same as --sft-data all (kept for old commands).")
    # -- rl (`rl_settings`; `lr` serves sft too)
    group_size: int = option(4, help="Episodes per task draw (GRPO's G).")
    batch_tasks: int = option(4, help="Task draws per RL iteration (all processes together "
                              "under accelerate launch).")
    lr: float | None = option(None, help="Learning rate (sft 1e-3 tiny / 2e-4 LoRA; RL 1e-4 "
                              "tiny / 1e-5 otherwise).")
    kl_coef: float = option(0.05, help="Weight of the KL penalty to the initial policy.")
    kl_estimator: str = option("k3", help="KL estimator: k1, k2 or k3.")
    clip_eps: float = option(0.2, help="PPO/GRPO ratio clip.")
    ppo_epochs: int = option(1, help="Passes over each iteration's rollouts.")
    mini_batches: int = option(4, help="Optimizer steps per pass.")
    warmup_steps: int = option(4, help="RL: linear lr warm-up over the first optimizer steps.")
    micro_batch_turns: int = option(8, help="Turns per forward pass (gradient accumulation).")
    entropy_coef: float = option(0.0, help="Entropy bonus weight.")
    value_coef: float = option(0.5, help="PPO value-loss weight.")
    value_lr: float = option(1e-3, help="PPO: the value head's learning rate.")
    value_detach: bool = option(True, help="PPO: the value head reads the trunk without "
                                "training it (--value-shared: its loss trains the trunk too).")
    gamma: float = option(1.0, help="PPO discount over turns.")
    lam: float = option(0.95, help="PPO GAE lambda.")
    outcome: str = option("success", help="GRPO episode reward: success (1/0) or return.")
    invalid_penalty: float = option(0.0, help="RL: reward subtracted per off-list or malformed "
                                    "action.")
    # -- rollout: how the policy acts (`policy_settings`, `rollout_settings`)
    max_steps_per_episode: int = option(8, help="Turns per episode before it counts as failed.")
    max_real_steps: int | None = option(None, help="Real env: stop when this many steps are "
                                        "spent (sim-to-real budget; all processes together "
                                        "under accelerate launch).")
    max_new_tokens: int | None = option(None, help="Longest answer (default: the policy's, 48).")
    history_budget_tokens: int | None = option(None, help="Prompt history budget in tokens.")
    think: bool | None = option(None, help="Answer with <think> first (default: the policy's).")
    temperature: float = option(1.0, help="Sampling temperature of RL rollouts.")
    action_interface: str = option("free", help="free: the env gets the generated action as "
                                   "is; listed: the most similar listed action (the env's "
                                   "admissible list), real and dream envs alike.")
    rollout_server: str | None = option(None, help="grpo/ppo: generate the rollouts on this "
                                        "vLLM server (http://HOST:PORT, run with "
                                        "VLLM_SERVER_DEV_MODE=1 on `dreamgym export-policy` "
                                        "output); the policy's weights are pushed to it after "
                                        "every update (docs/scale.md).")
    rollout_sync_dir: Path | None = option(None, help="Where pushed weights are written for "
                                           "--rollout-server to read: a path it sees (default: "
                                           "<out>.rollout-weights beside --out).")
    # -- the store and the validation
    enrich: bool = option(True, help="Add RL episodes to the store (--no-enrich: ablation).")
    retrieve_synthetic: bool = option(False, help="Dream env: let retrieval return synthetic "
                                      "transitions too (default: real ones only, as in "
                                      "training).")
    eval_tasks: Path | None = option(None, help="Validation task file: greedy success in the "
                                     "real env before training and every --eval-every "
                                     "iterations (eval/* in metrics.jsonl).")
    eval_every: int = option(5, help="Iterations between validation measurements.")
    eval_turns: int | None = option(None, help="Validation turn limit (default: "
                                    "--max-steps-per-episode).")
    # -- curriculum (`curriculum_settings`)
    curriculum: bool = option(True, help="Dream env: grow the pool with variations of "
                              "high-variance tasks (--no-curriculum: the 'w/o task generation' "
                              "ablation, uniform sampling). Real envs: always off.")
    curriculum_every: int = option(1, help="Curriculum: iterations between task-generation "
                                   "rounds.")
    lambda_: float = option(0.3, help="Curriculum: largest fraction of generated tasks in a "
                            "batch.")
    seeds_per_round: int = option(4, help="Curriculum: seed tasks per round (top-m by reward "
                                  "variance, V > 0).")
    candidates: int = option(4, help="Curriculum: candidate variations sampled per seed task.")
    zero_variance_weight: float = option(0.1, help="Curriculum: draw weight of a task whose "
                                         "latest group had zero reward variance (others 1).")
    # -- env workers and the model's trainable weights
    workers: int | None = option(None, help="Real env worker processes (0: in process; per "
                                 "process under accelerate launch).")
    ray: str | None = option(None, help="Env workers as Ray actors: 'local' starts Ray here, "
                             "else a cluster address (e.g. 'auto'). Not under accelerate "
                             "launch.")
    full: bool = option(False, help="Pretrained base: train all weights instead of LoRA.")
    lora_r: int = option(16, help="LoRA rank (pretrained bases).")
    lora_alpha: int = option(32, help="LoRA alpha (pretrained bases).")
    # -- bookkeeping
    seed: int = option(0, help="Seed for everything random.")
    checkpoint_every: int = option(1, help="RL: checkpoint every this many iterations.")
    resume: bool = option(False, help="Continue from the last checkpoint of this output.")
    force: bool = option(False, help="Retrain even if the output is up to date.")

    def __post_init__(self):
        if self.out is None:
            raise InputError("is required", field="out")
        if self.algo not in ALGOS:
            from dreamgym_cli.errors import unknown_name

            raise unknown_name("algorithm", self.algo, ALGOS, field="algo")
        if self.sft_all:
            object.__setattr__(self, "sft_data", "all")
        from dreamgym_cli.stages.train_agent_sft import SFT_DATA

        if self.sft_data not in SFT_DATA:
            from dreamgym_cli.errors import unknown_name

            raise unknown_name("SFT data", self.sft_data, SFT_DATA, field="sft_data")
        from dreamgym_cli.rl.rollout import ACTION_INTERFACES

        if self.action_interface not in ACTION_INTERFACES:
            from dreamgym_cli.errors import unknown_name

            raise unknown_name("action interface", self.action_interface, ACTION_INTERFACES,
                               field="action_interface")
        if self.warmup_steps < 0 or self.invalid_penalty < 0:
            raise InputError("expected >= 0", field="warmup_steps" if self.warmup_steps < 0
                             else "invalid_penalty")
        if self.rollout_server is not None and self.algo == "sft":
            raise InputError("sft generates nothing: --rollout-server is for grpo/ppo",
                             field="rollout_server")
        for name in ("out", "store", "init", "tasks", "eval_tasks", "rollout_sync_dir"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else Path(value))
        if (self.base is None) == (self.init is None):
            raise InputError("give exactly one of --base and --init", field="base")
        if self.algo == "sft" and self.store is None:
            raise InputError("sft learns from a replay store: pass --store", field="store")
        if self.algo != "sft" and self.tasks is None:
            raise InputError(f"{self.algo} needs a task file: pass --tasks", field="tasks")
        for name in ("iterations", "batch_size", "group_size", "batch_tasks",
                     "max_steps_per_episode", "ppo_epochs", "mini_batches", "micro_batch_turns",
                     "eval_every",
                     "curriculum_every", "seeds_per_round", "candidates"):
            if getattr(self, name) < 1:
                raise InputError(f"expected an integer >= 1, got {getattr(self, name)}",
                                 field=name)
        if not 0.0 < self.zero_variance_weight <= 1.0:
            raise InputError(f"expected a weight in (0, 1], got {self.zero_variance_weight}",
                             field="zero_variance_weight")
        if not 0.0 <= self.lambda_ <= 1.0:
            raise InputError(f"expected a fraction in [0, 1], got {self.lambda_}", field="lambda")
        for name in ("max_steps", "max_real_steps", "max_new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"expected an integer >= 1, got {value}", field=name)

    # ---- each part's settings, built from its group of fields (here and nowhere else) ----------

    def policy_settings(self, base: Any = None):
        """The output's PolicySettings: `base`'s (the init policy's, else the defaults) with the
        POLICY_FIELDS this config sets, and how the policy was made."""
        from dreamgym_cli.rl.policy import PolicySettings

        base = base or PolicySettings()
        prompt = {name: getattr(base, name) if value is None else value
                  for name, value in pick(self, POLICY_FIELDS).items()}
        return PolicySettings(**prompt, made_by={
            "algo": self.algo, "init": str(self.init) if self.init else None, "base": self.base,
            "env": self.env, "seed": self.seed, "parent": base.made_by or None})

    def rollout_settings(self, policy):
        """How the policy acts in the RL rollouts: its prompt format with this run's sampling."""
        from dreamgym_cli.rl.session import rollout_settings

        return rollout_settings(policy, temperature=self.temperature,
                                max_turns=self.max_steps_per_episode, seed=self.seed,
                                action_interface=self.action_interface)

    def sft_settings(self, tiny: bool):
        """llm.sft's settings; the default lr by model size (a tiny model takes a larger one)."""
        from dreamgym_cli.llm.sft import SFTSettings

        return SFTSettings(**pick(self, SFT_FIELDS), lr=self._lr(1e-3 if tiny else 2e-4),
                           eval_every=max(1, self.max_steps or 50), checkpoint_every=100)

    def rl_settings(self, tiny: bool):
        """The RL loop's settings (checked); the default lr by model size."""
        from dreamgym_cli.rl.learner import RLSettings, check_settings

        settings = RLSettings(**pick(self, RL_FIELDS), lr=self._lr(1e-4 if tiny else 1e-5))
        check_settings(settings)
        return settings

    def curriculum_settings(self, enabled: bool):
        """The curriculum sampler's settings (`--lambda` is its `lam`)."""
        from dreamgym_cli.curriculum.sampler import CurriculumSettings

        return CurriculumSettings(enabled=enabled, every=self.curriculum_every, lam=self.lambda_,
                                  **pick(self, CURRICULUM_FIELDS))

    def _lr(self, default: float) -> float:
        return self.lr if self.lr is not None else default


def run(config: TrainAgentConfig, progress=None) -> dict[str, Any]:
    inputs = {k: getattr(config, k) for k in ("store", "init", "tasks", "eval_tasks")
              if getattr(config, k)}
    if config.env and config.env.startswith("dream:"):
        inputs["em"] = Path(config.env.split(":", 1)[1])
    for name, path in inputs.items():
        if not Path(path).exists():
            raise InputError("not found", file=path, field=name)
    from dreamgym_cli.scale import distributed

    if distributed.launched() and config.algo != "sft":
        from dreamgym_cli.stages.train_agent_rl import check_launch

        check_launch(config)
    full_config = to_dict(config)
    key_config = {k: v for k, v in full_config.items() if k not in NOT_IN_FINGERPRINT}
    if distributed.launched() and config.algo != "sft":  # each process samples its own share
        key_config["processes"] = distributed.processes()
    run_ = ArtifactRun("train-agent", config.out, full_config, inputs=inputs, force=config.force,
                       fingerprint_config=key_config)
    from dreamgym_cli.stages.train_agent_rl import train_rl
    from dreamgym_cli.stages.train_agent_sft import train_sft

    train = train_sft if config.algo == "sft" else train_rl
    # under `accelerate launch`: ranks > 0 train their share and write nothing
    followed = distributed.follow(run_, lambda out: train(config, out, None))
    if followed is not None:
        return followed
    with run_:
        if run_.up_to_date:
            return {"out": str(config.out), "skipped": True, **run_.previous["metrics"]}
        metrics, extra = train(config, run_.tmp, progress)
        manifest = run_.commit(metrics=metrics, extra=extra)
    distributed.done()
    return {"out": str(config.out), "skipped": False, **manifest["metrics"]}
