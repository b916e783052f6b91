"""PPO's critic: one linear layer on the policy's last hidden state at the end of a turn's prompt.

It shares the policy's trunk (the value loss trains the trunk too, as in TRL/verl's shared-model
PPO for small models) and is saved beside the policy as `value_head.safetensors`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dreamgym_cli.rl.policy import VALUE_HEAD_FILE


class ValueHead(torch.nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)  # V = 0 at the start: no false confidence
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, H] → [B]."""
        return self.linear(hidden).squeeze(-1)


def hidden_size(model) -> int:
    config = model.config if hasattr(model, "config") else model.get_base_model().config
    return int(config.hidden_size)


def load_value_head(model, policy_dir: str | Path | None) -> ValueHead:
    """The value head saved in `policy_dir` when there is one, else a fresh zero one."""
    head = ValueHead(hidden_size(model))
    file = Path(policy_dir) / VALUE_HEAD_FILE if policy_dir else None
    if file is not None and file.is_file():
        from safetensors.torch import load_file

        state = load_file(str(file))
        if state["linear.weight"].shape == head.linear.weight.shape:
            head.load_state_dict(state)
    return head
