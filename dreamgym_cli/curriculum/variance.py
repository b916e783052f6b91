"""Reward variance per task, seed-task selection and the λ mix of a batch (DESIGN §8). Pure.

A task whose rollouts sometimes succeed and sometimes fail (V > 0) is where the agent learns; the
curriculum asks the experience model for variations of the tasks with the largest V. For PPO,
which has no groups of rollouts per task, tasks are grouped by clustering their instruction
embeddings (`cluster_groups`) and V is computed per cluster.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np


def reward_variance(rewards: Sequence[float] | np.ndarray,
                    group_ids: Sequence[Hashable]) -> dict[Hashable, float]:
    """V = mean((r_i − r̄)²) per group (population variance; ≤ 0.25 for 0/1 rewards).

    rewards [N], group_ids [N] → {group: V}, groups in order of first appearance. A group whose
    rewards are all equal gets exactly 0.0 (no rounding residue that would look like signal).
    """
    values = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if len(values) != len(group_ids):
        raise ValueError(f"{len(values)} rewards but {len(group_ids)} group ids")
    members: dict[Hashable, list[float]] = {}
    for group, reward in zip(group_ids, values.tolist()):
        members.setdefault(group, []).append(reward)
    out = {}
    for group, rs in members.items():
        arr = np.asarray(rs)
        out[group] = 0.0 if arr.max() == arr.min() else float(np.mean((arr - arr.mean()) ** 2))
    return out


def select_seed_tasks(variances: Mapping[Hashable, float], m: int) -> list[Hashable]:
    """The top-m task ids by V among those with V > 0; ties broken by task id (ascending)."""
    candidates = [(task, v) for task, v in variances.items() if v > 0]
    candidates.sort(key=lambda item: (-item[1], str(item[0])))
    return [task for task, _ in candidates[:max(0, m)]]


def zero_variance_share(variances: Mapping[Hashable, float]) -> float:
    """Fraction of groups with V == 0 (no learning signal); 0.0 when there are no groups."""
    if not variances:
        return 0.0
    return sum(1 for v in variances.values() if v == 0) / len(variances)


def spread_to_members(group_of: Mapping[Hashable, Hashable],
                      variances: Mapping[Hashable, float]) -> dict[Hashable, float]:
    """{task: V of its group} — for PPO, where V is computed per cluster of tasks."""
    return {task: variances.get(group, 0.0) for task, group in group_of.items()}


def _draw(pool: Sequence[Hashable], n: int, rng: np.random.Generator) -> list[Hashable]:
    """n draws from `pool`: without replacement while it lasts, then again from a fresh shuffle."""
    out: list[Hashable] = []
    while len(out) < n:
        order = rng.permutation(len(pool))
        out.extend(pool[i] for i in order[: n - len(out)])
    return out


def _draw_weighted(pool: Sequence[Hashable], weights: Sequence[float], n: int,
                   rng: np.random.Generator) -> list[Hashable]:
    """n draws from `pool` in proportion to `weights`, without replacement while it lasts."""
    w = np.asarray(weights, dtype=float)
    if len(w) != len(pool) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("weights must be finite, ≥ 0, not all 0, one per pool task")
    out: list[Hashable] = []
    while len(out) < n:
        take = min(n - len(out), int((w > 0).sum()))
        picked = rng.choice(len(pool), size=take, replace=False, p=w / w.sum())
        out.extend(pool[i] for i in picked)
    return out


def task_priorities(task_ids: Sequence[Hashable], variances: dict, zero_weight: float
                    ) -> list[float]:
    """Draw weights of the curriculum: 1 for a task never seen or last seen with V > 0,
    `zero_weight` for one whose last group had V = 0 (always solved or always failed).

    The documented heuristic behind "keep the agent on tasks it sometimes solves": tasks whose
    last group taught nothing (GRPO's advantages are all zero there) are drawn less often, never excluded
    (`zero_weight` > 0).
    """
    return [zero_weight if variances.get(t, 1.0) <= 0.0 else 1.0 for t in task_ids]


def mix_batch(original_ids: Sequence[Hashable], generated_ids: Sequence[Hashable],
              batch_size: int, lam: float, rng: np.random.Generator,
              original_weights: Sequence[float] | None = None) -> list[Hashable]:
    """A batch of task ids with at most ⌊λ·batch_size⌋ generated tasks, the rest original.

    Fewer generated tasks when fewer exist (each generated task at most once); original tasks are
    drawn without replacement (in proportion to `original_weights` when given) and repeat only
    when the pool is smaller than what is needed. The batch is shuffled. λ = 0 is the paper's
    "w/o task generation" ablation.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    if batch_size < 0:
        raise ValueError(f"batch_size must be ≥ 0, got {batch_size}")
    # The epsilon keeps e.g. 0.29 · 100 = 28.999999999999996 from flooring to 28.
    n_generated = min(math.floor(lam * batch_size + 1e-9), len(generated_ids))
    n_original = batch_size - n_generated
    if n_original and not original_ids:
        raise ValueError("the original task pool is empty")
    if original_weights is None:
        batch = _draw(list(original_ids), n_original, rng)
    else:
        batch = _draw_weighted(list(original_ids), original_weights, n_original, rng)
    if n_generated:
        picked = rng.choice(len(generated_ids), size=n_generated, replace=False)
        batch += [generated_ids[i] for i in picked]
    return [batch[i] for i in rng.permutation(len(batch))]


def _sq_dist(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distances [N, k] via ‖x‖² − 2x·c + ‖c‖² (no [N, k, d] intermediate)."""
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(1)[None]
    return np.maximum(d2, 0.0)


def _kmeans_pp_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: centres [k, d] spread out in proportion to squared distance."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = _sq_dist(x, np.asarray(centres)).min(1)
        total = d2.sum()
        pick = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centres.append(x[pick])
    return np.asarray(centres)


def cluster_groups(embeddings: np.ndarray, n_clusters: int, seed: int = 0,
                   max_iter: int = 100) -> np.ndarray:
    """Deterministic k-means (k-means++ init, Lloyd steps).   embeddings [N, d] → labels [N].

    Euclidean distance (for normalised sentence embeddings this ranks like cosine). k is capped at
    the number of distinct points. Labels are renumbered in order of first appearance, so equal
    inputs and seed give equal labels. An emptied cluster is re-seeded at the point farthest from
    its centre.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be [N, d], got shape {x.shape}")
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    k = max(1, min(int(n_clusters), len(np.unique(x, axis=0))))
    rng = np.random.default_rng(seed)
    centres = _kmeans_pp_init(x, k, rng)
    labels = np.full(len(x), -1)
    for _ in range(max_iter):
        dist = _sq_dist(x, centres)  # [N, k]
        new_labels = dist.argmin(1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for c in range(k):
            members = x[labels == c]
            if len(members):
                centres[c] = members.mean(0)
            else:
                centres[c] = x[dist[np.arange(len(x)), labels].argmax()]
    _, first = np.unique(labels, return_index=True)
    order = {label: rank for rank, label in enumerate(labels[np.sort(first)])}
    return np.array([order[label] for label in labels], dtype=np.int64)
