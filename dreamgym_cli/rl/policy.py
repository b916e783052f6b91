"""A policy directory: `save_model` output + `policy.json` (how the policy prompts and acts).

`policy.json` carries what the rollout needs to build the exact prompts the policy was trained
on (thinking on/off, the history budget in its own tokens, the longest answer) and how the policy
was made (algorithm, init, env, iterations). A PPO policy also keeps its value head beside it
(`value_head.safetensors`), so PPO can continue from it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamgym_cli.config import option
from dreamgym_cli.errors import InputError

POLICY_FILE = "policy.json"
VALUE_HEAD_FILE = "value_head.safetensors"


@dataclasses.dataclass(frozen=True)
class PolicySettings:
    """How a policy is prompted and sampled (saved as policy.json)."""

    think: bool = option(False, help="answer with <think>…</think> before <action>…</action>")
    history_budget_tokens: int = option(256, help="token budget of the prompt's history section")
    max_new_tokens: int = option(48, help="longest answer in tokens")
    made_by: dict = option({}, help="how the policy was made (algorithm, init, env, ...)")

    def __post_init__(self):
        if self.history_budget_tokens < 0:
            raise InputError(f"expected >= 0, got {self.history_budget_tokens}",
                             field="history_budget_tokens")
        if self.max_new_tokens < 1:
            raise InputError(f"expected >= 1, got {self.max_new_tokens}", field="max_new_tokens")

    def save(self, out_dir: str | Path) -> None:
        text = json.dumps(dataclasses.asdict(self), indent=2, default=str) + "\n"
        (Path(out_dir) / POLICY_FILE).write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, policy_dir: str | Path) -> "PolicySettings":
        file = Path(policy_dir) / POLICY_FILE
        if not file.is_file():
            raise InputError(f"not a policy directory (no {POLICY_FILE}); make one with "
                             "`dreamgym train-agent`", file=policy_dir)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"not valid JSON: {e.msg}", file=file, line=e.lineno) from None
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict):
            raise InputError("expected a JSON object", file=file)
        return cls(**{k: v for k, v in data.items() if k in known})


def is_policy_dir(path: str | Path) -> bool:
    return (Path(path) / POLICY_FILE).is_file()


def load_policy(policy_dir: str | Path, *, lora=None, full: bool = False
                ) -> tuple[Any, Any, PolicySettings]:
    """(model, tokenizer, settings) of a policy directory."""
    from dreamgym_cli.llm.models import load_model

    settings = PolicySettings.load(policy_dir)
    model, tokenizer = load_model(policy_dir, lora=lora, full=full)
    return model, tokenizer, settings


def save_policy(model, tokenizer, out_dir: str | Path, settings: PolicySettings,
                value_head=None) -> Path:
    from dreamgym_cli.llm.models import save_model

    out = save_model(model, tokenizer, out_dir)
    settings.save(out)
    if value_head is not None:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().clone() for k, v in value_head.state_dict().items()}
        save_file(state, str(out / VALUE_HEAD_FILE))
    return out


def token_counter(tokenizer) -> Callable[[str], int]:
    """Length of a text in the policy's own tokens (history budgets are measured with it)."""
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
