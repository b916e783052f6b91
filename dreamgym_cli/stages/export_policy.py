"""`dreamgym export-policy`: a policy directory as the model dir a vLLM rollout server serves.

`train-agent --algo grpo|ppo --rollout-server URL` pushes the policy's weights into that server
after every update (`llm/weight_sync.py`); vLLM's in-place reload needs a model whose output
embedding is its own tensor, so the export unties them (and merges a LoRA adapter).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dreamgym_cli.config import option, require_paths
from dreamgym_cli.errors import InputError


@dataclasses.dataclass(frozen=True)
class ExportPolicyConfig:
    policy: Path = option(None, help="Policy directory (train-agent's output).")
    out: Path = option(None, help="Model directory to write, for `vllm serve` (LoRA merged, "
                       "embeddings untied).")

    def __post_init__(self):
        require_paths(self, "policy", "out")


def run(config: ExportPolicyConfig) -> dict[str, Any]:
    from dreamgym_cli.llm.weight_sync import export_for_serving
    from dreamgym_cli.rl.policy import is_policy_dir, load_policy

    if not is_policy_dir(config.policy):
        raise InputError("not a policy directory (no policy.json); make one with "
                         "`dreamgym train-agent`", file=config.policy, field="policy")
    if config.out.exists() and any(config.out.iterdir()):
        raise InputError("exists and is not empty: choose a new directory", file=config.out,
                         field="out")
    model, tokenizer, _ = load_policy(config.policy)
    out = export_for_serving(model, tokenizer, config.out)
    return {"policy": str(config.policy), "out": str(out)}
