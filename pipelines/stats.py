"""Paired differences and a hierarchical bootstrap over (seed, game) pairs, for the table reports.

A row's result is a matrix of success per (seed, game): every training seed is evaluated on the
same held-out games, so a game is a shared unit across seeds. The difference to a reference row
(SFT) is taken pair by pair; its uncertainty comes from both sources of variation, the training
seeds and the sample of games, so each bootstrap replicate draws seeds with replacement and games
with replacement, the same game draw for every seed of the replicate.
"""

from __future__ import annotations

import numpy as np

REPLICATES = 10_000
RNG_SEED = 20251103  # fixed: the same run directory always gives the same interval
CHUNK = 1_000  # replicates drawn at once (bounds memory for many games)


def success_matrix(per_seed: dict[int, dict[str, float]], seeds: list[int],
                   games: list[str]) -> np.ndarray:
    """[S, G] success per (seed, game), NaN where that seed has no result for the game."""
    out = np.full((len(seeds), len(games)), np.nan)
    for i, s in enumerate(seeds):
        for j, g in enumerate(games):
            value = per_seed.get(s, {}).get(g)
            if value is not None:
                out[i, j] = value
    return out


def paired_difference(row: dict[int, dict[str, float]], reference: dict[int, dict[str, float]]
                      ) -> tuple[np.ndarray, list[int], list[str]]:
    """d(s, g) = row(s, g) - reference(s, g) as an [S, G] matrix, NaN where either row lacks the
    pair; over (and with) the seeds and games that have at least one pair."""
    pairs = {(s, g) for s, games in row.items() for g in games
             if g in reference.get(s, {})}
    seeds = sorted({s for s, _ in pairs})
    games = sorted({g for _, g in pairs})
    diff = success_matrix(row, seeds, games) - success_matrix(reference, seeds, games)
    return diff, seeds, games


def pair_mean(matrix: np.ndarray) -> float | None:
    """Mean over the present (non-NaN) pairs; None when there is none."""
    present = ~np.isnan(matrix)
    return float(matrix[present].mean()) if present.any() else None


def hierarchical_bootstrap(matrix: np.ndarray, replicates: int = REPLICATES,
                           seed: int = RNG_SEED, level: float = 0.95
                           ) -> tuple[float, float] | None:
    """Percentile interval of the pair mean of `matrix` [S, G] (NaN = missing pair).

    Replicate r draws S seeds and G games with replacement; with draw counts c_s [S] and c_g [G]
    its statistic is sum(c_s[i] c_g[j] x[i, j]) / sum(c_s[i] c_g[j] present[i, j]), the mean over
    the resampled present pairs. Replicates without any present pair are dropped. None when
    the matrix has no present pair.
    """
    present = ~np.isnan(matrix)
    if not present.any():
        return None
    values = np.where(present, matrix, 0.0)
    weights = present.astype(float)
    n_seeds, n_games = matrix.shape
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, replicates, CHUNK):
        n = min(CHUNK, replicates - start)
        c_seed = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n)  # [n, S]
        c_game = rng.multinomial(n_games, np.full(n_games, 1.0 / n_games), size=n)  # [n, G]
        total = ((c_seed @ values) * c_game).sum(axis=1)  # [n]
        count = ((c_seed @ weights) * c_game).sum(axis=1)  # [n]
        stats.append(total[count > 0] / count[count > 0])
    stats = np.concatenate(stats)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)
