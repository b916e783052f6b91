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

RL (`train-agent --algo grpo|ppo`): each rank rolls out its share of the iteration's task draws
(whole GRPO groups: draw g on rank g mod W), the episodes are gathered on every rank in global
draw order, the reference/value scoring is split over the ranks, and the update is the DDP one
above. The task draws come from rank 0 (the curriculum lives there), and rank 0 alone logs,
checkpoints, evaluates and writes the store.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

_CURRENT: "Dist | None" = None
COLLECTIVE_TIMEOUT_S = 2 * 3600  # longest a rank waits for the others at one collective


def launched() -> bool:
    """True in a process started by `accelerate launch`/torchrun with more than one process."""
    return processes() > 1


def processes() -> int:
    """How many processes this launch runs (1 without a launcher); read before `current()`."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def current() -> "Dist | None":
    """The process group of this launch (created once), or None in a plain single process."""
    global _CURRENT
    if _CURRENT is None and launched():
        _CURRENT = Dist()
    return _CURRENT


class Dist:
    """This process's place in the launch and the few collectives the trainers need."""

    def __init__(self):
        from datetime import timedelta

        from accelerate import Accelerator
        from accelerate.utils import InitProcessGroupKwargs

        # Some work runs on rank 0 alone while the others wait at the next collective (RL
        # validation, curriculum rounds, checkpoints of a large model): torch's default timeout
        # (30 min; 10 min for NCCL) would end such a run; a crashed rank still ends it at once
        # (the launcher stops the others).
        wait = InitProcessGroupKwargs(timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[wait])
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

    def sum_counts(self, counts: dict[str, float]) -> dict[str, float]:
        """{key: value summed over ranks} (every rank passes the same keys); ints stay ints."""
        keys = sorted(counts)
        totals = self.sum([float(counts[k]) for k in keys])
        return {k: int(v) if isinstance(counts[k], int) else v for k, v in zip(keys, totals)}

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj` on every rank, in rank order (picklable objects)."""
        import torch.distributed

        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    @property
    def kind(self) -> str:
        """accelerate's name for this launch: MULTI_CPU, MULTI_GPU, FSDP, DEEPSPEED, ..."""
        return str(getattr(self.accelerator.distributed_type, "value",
                           self.accelerator.distributed_type))

    @property
    def data_parallel(self) -> bool:
        """Whether every rank holds the whole model (DDP), not a shard of it (FSDP, DeepSpeed,
        Megatron-LM from an accelerate config)."""
        return self.kind not in ("FSDP", "DEEPSPEED", "MEGATRON_LM")

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


# ---- the RL iteration ---------------------------------------------------------------------------


def rank_draws(dist: Dist, draws: int) -> list[int]:
    """The global indices of the task draws this rank rolls out: rank, rank + world, ... A draw's
    `group_size` episodes stay on one rank, so GRPO's group statistics need no communication."""
    return list(range(dist.rank, draws, dist.world))


def from_main(dist: Dist, make: Callable[[], Any]) -> Any:
    """`make()` run on rank 0 only, its result on every rank (e.g. the iteration's task draws:
    a stateful sampler such as the curriculum lives on rank 0)."""
    return dist.broadcast(make() if dist.is_main else None)


def gather_groups(dist: Dist, items: Sequence[Any]) -> list[Any]:
    """Every rank's items (each with its global `group` index) on every rank, ordered by group;
    a group's items keep their order (the 1-process batch's order)."""
    merged = [x for part in dist.gather(list(items)) for x in part]
    return sorted(merged, key=lambda x: x.group)


def sharded(dist: Dist, score: Callable[..., tuple]) -> Callable[..., tuple]:
    """`score(model, items, ...) -> (list | None, ...)` (one entry per item in each list) with
    each rank scoring its share of `items` and every rank receiving all of them in order. Every
    rank must call it with the same items (a collective)."""

    def run(model, items: Sequence[Any], *args, **kwargs) -> tuple:
        parts = dist.gather(score(model, dist.share(items), *args, **kwargs))
        out: list[list[Any] | None] = []
        for k, first in enumerate(parts[0]):
            if first is None:
                out.append(None)
                continue
            merged: list[Any] = [None] * len(items)
            for rank, part in enumerate(parts):
                merged[rank::dist.world] = part[k]
            out.append(merged)
        return tuple(out)

    return run


def same_weights(dist: Dist, parameters: Sequence[torch.Tensor]) -> list[str]:
    """Every rank's `weights_digest`; an error when they differ (DDP keeps them equal)."""
    digests = dist.gather(weights_digest(parameters))
    if len(set(digests)) > 1:
        raise RuntimeError(f"the {dist.world} training processes ended with different weights "
                           f"(digests {digests}); the run is not published")
    return digests


def weights_digest(parameters: Sequence[torch.Tensor]) -> str:
    """A fingerprint of the trainable weights (float64 sum and sum of squares per tensor, computed
    where they live): ranks that drifted apart get different digests."""
    import hashlib

    stats = [torch.stack([p.detach().double().sum(), p.detach().double().square().sum()])
             for p in parameters]
    flat = torch.cat(stats).cpu() if stats else torch.zeros(0, dtype=torch.float64)
    return hashlib.sha256(flat.numpy().tobytes()).hexdigest()[:16]


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
