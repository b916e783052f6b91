"""RL run state on disk: the metrics log (JSONL + TensorBoard) and resumable checkpoints.

A checkpoint (`RUN_DIR/last/`) holds the trainable weights (all of them for full fine-tuning,
the adapter for LoRA), the value head, the optimizer state and the iteration reached; it is
written to a temporary sibling and renamed, so a crash leaves the previous one intact. The
iteration's randomness is derived from (seed, iteration), so nothing else needs saving.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


class MetricsLog:
    """One JSON object per iteration in `path`; the same scalars to TensorBoard when installed."""

    def __init__(self, path: Path, keep_until: int = 0):
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if keep_until and path.is_file():  # a resumed run keeps the iterations it did not redo
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("iteration", 0) <= keep_until]
        path.write_text("".join(line + "\n" for line in kept))
        self.path, self.count = path, 0
        self._file = open(path, "a", encoding="utf-8")
        self._tb = _tensorboard(path.parent / "tensorboard")

    def write(self, metrics: dict) -> None:
        self._file.write(json.dumps(metrics, default=float) + "\n")
        self._file.flush()
        self.count += 1
        if self._tb is not None:
            step = int(metrics.get("iteration", self.count))
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _tensorboard(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        from dreamgym_cli.ui import stderr

        stderr.print("TensorBoard is not installed (pip install tensorboard); metrics go to "
                     "metrics.jsonl only", highlight=False, soft_wrap=True)
        return None
    return SummaryWriter(str(log_dir))


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().clone() for n, p in model.named_parameters()
            if p.requires_grad}


def save_checkpoint(run_dir: Path, learner, iteration: int, real_steps_used: int) -> None:
    from safetensors.torch import save_file

    from dreamgym_cli.artifacts import atomic_dir

    with atomic_dir(run_dir / "last") as tmp:
        save_file(_trainable_state(learner.model), str(tmp / "model.safetensors"))
        if learner.value_head is not None:
            save_file({k: v.contiguous() for k, v in learner.value_head.state_dict().items()},
                      str(tmp / "value_head.safetensors"))
        torch.save(learner.optimizer.state_dict(), tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps({"iteration": iteration,
                                                    "real_steps_used": real_steps_used,
                                                    "updates": learner.updates}))


def load_checkpoint(run_dir: Path, learner) -> tuple[int, int]:
    """(iteration reached, real steps used) after loading `run_dir/last`; (0, 0) without one."""
    from safetensors.torch import load_file

    from dreamgym_cli.artifacts import readable_dir

    path = readable_dir(run_dir / "last")
    if path is None or not (path / "state.json").is_file():
        return 0, 0
    missing = learner.model.load_state_dict(load_file(str(path / "model.safetensors")),
                                            strict=False)
    if missing.unexpected_keys:
        raise RuntimeError(f"checkpoint {path} does not fit this model "
                           f"(e.g. {missing.unexpected_keys[0]})")
    if learner.value_head is not None and (path / "value_head.safetensors").is_file():
        learner.value_head.load_state_dict(load_file(str(path / "value_head.safetensors")))
    learner.optimizer.load_state_dict(torch.load(path / "optim.pt", weights_only=True))
    state = json.loads((path / "state.json").read_text())
    learner.updates = int(state.get("updates", 0))  # the lr warm-up continues where it was
    return int(state["iteration"]), int(state["real_steps_used"])
