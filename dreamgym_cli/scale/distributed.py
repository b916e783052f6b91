"""Multi-process training under `accelerate launch` (DDP through accelerate's `Accelerator`).

    accelerate launch --multi_gpu --num_processes 2 $(which dreamgym) train-em ...   # 2 processes

(on a CPU-only machine the same command runs 2 gloo processes; FSDP/DeepSpeed come from an
`accelerate config` file, see docs/scale.md). Without a launcher (`WORLD_SIZE` unset or 1)
`current()` is None and every stage runs its single-process code unchanged.

The global batch is what a 1-process run would use; each rank takes its share of the examples
(rank r: items r, r+W, ...). Losses are token sums divided by the GLOBAL token count and
multiplied by W (DDP averages gradients over ranks), so the synced gradient — and every step's
loss — is the 1-process one up to float summation order. Only rank 0 writes checkpoints,
models and manifests; the others train and wait.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

_CURRENT: "Dist | None" = None


def launched() -> bool:
    """True in a process started by `accelerate launch`/torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> "Dist | None":
    """The process group of this launch (created once), or None in a plain single process."""
    global _CURRENT
    if _CURRENT is None and launched():
        _CURRENT = Dist()
    return _CURRENT


class Dist:
    """This process's place in the launch and the few collectives the trainers need."""

    def __init__(self):
        from accelerate import Accelerator

        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.device = self.accelerator.device

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """The DDP (or FSDP/DeepSpeed, per the accelerate config) wrapper of `module`."""
        return self.accelerator.prepare_model(module)

    def share(self, items: Sequence[Any]) -> list[Any]:
        """This rank's share of a global batch: items rank, rank + world, ..."""
        return list(items[self.rank::self.world])

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (float64)."""
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        return self.accelerator.reduce(t, reduction="sum").tolist()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (picklable objects)."""
        from accelerate.utils import broadcast_object_list

        box = [obj]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def wait(self) -> None:
        self.accelerator.wait_for_everyone()


# ---- the RL update -----------------------------------------------------------------------------


def micro_batches(dist: Dist, mini: Sequence[Any], micro: int) -> list[tuple[list[Any], bool]]:
    """This rank's micro-batches of a mini-batch: (chunk, real). Chunks are dealt round-robin;
    a rank short of chunks gets zero-weight repeats (real=False) so that every rank runs the
    same number of backward passes (each one is a DDP all-reduce)."""
    chunks = [list(mini[m:m + micro]) for m in range(0, len(mini), micro)]
    rounds = -(-len(chunks) // dist.world)
    mine = chunks[dist.rank::dist.world]
    return [(c, True) for c in mine] + [(chunks[0], False)] * (rounds - len(mine))


def reduce_metrics(dist: Dist, totals: dict[str, list[tuple[float, float]]]
                   ) -> dict[str, list[tuple[float, float]]]:
    """Per-key (Σ value·weight, Σ weight) over ranks, as one (value, weight) pair per key."""
    keys = sorted(totals)
    sums = dist.sum([sum(v * w for v, w in totals[k]) for k in keys] +
                    [sum(w for _, w in totals[k]) for k in keys])
    n = len(keys)
    return {k: [(sums[i] / sums[n + i] if sums[n + i] else 0.0, sums[n + i])]
            for i, k in enumerate(keys)}


def wrap_learner(dist: Dist, learner) -> tuple[Any, Any]:
    """(model, value head) DDP wrappers of a learner's modules, made once per learner."""
    key = id(learner)
    if _WRAPPED.get(key, (None,))[0] is not learner:
        head = None if learner.value_head is None else dist.prepare(learner.value_head)
        _WRAPPED[key] = (learner, dist.prepare(learner.model), head)
    return _WRAPPED[key][1:]


_WRAPPED: dict[int, tuple] = {}


# ---- stages: rank 0 writes, the others train ----------------------------------------------------


def follow(run_, work) -> dict | None:
    """On a rank other than 0: take part in the training (`work(None)`: no output dir) and write
    nothing; the stage's result for this rank. None on rank 0 and in a plain single process,
    where the stage goes on to train and publish its artifact as usual."""
    dist = current()
    if dist is None or dist.is_main:
        return None
    if run_.up_to_date:  # rank 0 sees the same manifest and skips too
        return {"out": str(run_.out), "skipped": True, "rank": dist.rank}
    work(None)
    dist.wait()
    return {"out": str(run_.out), "skipped": False, "rank": dist.rank}


def done() -> None:
    """Rank 0 after publishing: release the ranks waiting in `follow`."""
    if current() is not None:
        current().wait()
