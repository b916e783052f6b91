"""Reward variance, seed selection, the λ mix and the clustering for PPO — checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamgym_cli.curriculum.variance import (cluster_groups, mix_batch, reward_variance,
                                              task_priorities,
                                              select_seed_tasks, spread_to_members,
                                              zero_variance_share)


def test_reward_variance_by_hand():
    # t1: 1,0,1,0 → mean .5, V = 4·.25/4 = 0.25 (the maximum for 0/1)
    # t2: 1,0,0,0 → mean .25, V = (.75² + 3·.25²)/4 = (.5625 + .1875)/4 = 0.1875
    # t3: 1,1 → 0;  t4: 0.1 three times → exactly 0, not a rounding residue
    rewards = [1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0.1, 0.1, 0.1, 1]
    groups = ["t1", "t2", "t1", "t1", "t2", "t1", "t2", "t3", "t2", "t3", "t4", "t4", "t4", "t5"]
    v = reward_variance(rewards, groups)
    assert v == {"t1": 0.25, "t2": 0.1875, "t3": 0.0, "t4": 0.0, "t5": 0.0}
    assert list(v) == ["t1", "t2", "t3", "t4", "t5"]  # order of first appearance
    with pytest.raises(ValueError):
        reward_variance([1, 0], ["a"])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from([0.0, 1.0])), min_size=1))
def test_variance_of_binary_rewards_is_at_most_a_quarter(pairs):
    v = reward_variance([r for _, r in pairs], [g for g, _ in pairs])
    assert all(0.0 <= x <= 0.25 for x in v.values())
    for group, value in v.items():  # V = p(1 − p) for 0/1 rewards with success rate p
        rs = [r for g, r in pairs if g == group]
        p = sum(rs) / len(rs)
        assert value == pytest.approx(p * (1 - p))


def test_select_seed_tasks_top_m_with_positive_variance():
    variances = {"t9": 0.25, "t2": 0.1875, "t1": 0.25, "t3": 0.0, "t4": 0.09}
    assert select_seed_tasks(variances, 2) == ["t1", "t9"]  # tie at 0.25 → by task id
    assert select_seed_tasks(variances, 10) == ["t1", "t9", "t2", "t4"]  # never V = 0
    assert select_seed_tasks(variances, 0) == []
    assert select_seed_tasks({"a": 0.0}, 3) == []


def test_zero_variance_share_and_cluster_spread():
    assert zero_variance_share({"a": 0.0, "b": 0.25, "c": 0.0, "d": 0.1}) == 0.5
    assert zero_variance_share({}) == 0.0
    assert spread_to_members({"t1": 0, "t2": 1, "t3": 0}, {0: 0.2, 1: 0.0}) == {
        "t1": 0.2, "t2": 0.0, "t3": 0.2}


def test_mix_batch_caps_the_generated_share():
    original = [f"o{i}" for i in range(20)]
    generated = [f"g{i}" for i in range(20)]
    batch = mix_batch(original, generated, 10, 0.3, np.random.default_rng(0))
    assert len(batch) == 10
    assert sum(b.startswith("g") for b in batch) == 3  # ⌊0.3·10⌋
    assert len(set(batch)) == 10  # pools large enough: no repeats
    # 0.29·100 = 28.999999999999996 in floating point; the cap is still ⌊29⌋
    big = mix_batch(original * 5, [f"g{i}" for i in range(50)], 100, 0.29,
                    np.random.default_rng(0))
    assert sum(b.startswith("g") for b in big) == 29


def test_mix_batch_with_few_generated_and_a_small_pool():
    # λ allows ⌊0.5·8⌋ = 4 generated but only 1 exists; the 7 others come from a pool of 3,
    # drawn without replacement then reshuffled: each original appears 2 or 3 times
    batch = mix_batch(["a", "b", "c"], ["g"], 8, 0.5, np.random.default_rng(1))
    assert batch.count("g") == 1
    counts = sorted(batch.count(x) for x in "abc")
    assert counts == [2, 2, 3]
    assert mix_batch(["a"], ["g1", "g2"], 4, 0.0, np.random.default_rng(0)) == ["a"] * 4
    with pytest.raises(ValueError):
        mix_batch(["a"], [], 4, 1.5, np.random.default_rng(0))
    with pytest.raises(ValueError):
        mix_batch([], ["g"], 4, 0.25, np.random.default_rng(0))


def test_mix_batch_is_deterministic_for_a_seed():
    args = ([f"o{i}" for i in range(7)], [f"g{i}" for i in range(7)], 6, 0.5)
    first = mix_batch(*args, np.random.default_rng(42))
    assert first == mix_batch(*args, np.random.default_rng(42))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10), st.integers(0, 10), st.integers(0, 40), st.floats(0, 1),
       st.integers(0, 1000))
def test_mix_batch_bounds(n_orig, n_gen, size, lam, seed):
    batch = mix_batch([f"o{i}" for i in range(n_orig)], [f"g{i}" for i in range(n_gen)], size,
                      lam, np.random.default_rng(seed))
    n_generated = sum(b.startswith("g") for b in batch)
    assert len(batch) == size
    assert n_generated == min(math.floor(lam * size + 1e-9), n_gen)
    assert len({b for b in batch if b.startswith("g")}) == n_generated  # each at most once


def test_cluster_groups_separates_obvious_clusters_deterministically():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = np.concatenate([c + 0.1 * rng.standard_normal((5, 2)) for c in centres])
    labels = cluster_groups(points, 3, seed=7)
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5  # renumbered by first appearance
    assert np.array_equal(labels, cluster_groups(points, 3, seed=7))
    # the grouping (not the numbering) is the same for any seed on data this clear
    assert np.array_equal(cluster_groups(points, 3, seed=123), labels)
    # variance per cluster: cluster 0 has rewards 1,0,1,0,1 → p = .6 → V = .24
    rewards = [1, 0, 1, 0, 1] + [1] * 5 + [0] * 5
    v = reward_variance(rewards, labels.tolist())
    assert v[0] == pytest.approx(0.24) and v[1] == 0.0 and v[2] == 0.0


def test_cluster_groups_edge_cases():
    same = np.ones((4, 3))
    assert cluster_groups(same, 3).tolist() == [0, 0, 0, 0]  # k capped at distinct points
    assert cluster_groups(np.zeros((0, 3)), 2).tolist() == []
    two = np.array([[0.0], [0.0], [5.0]])
    assert cluster_groups(two, 5).tolist() == [0, 0, 1]
    with pytest.raises(ValueError):
        cluster_groups(np.ones(3), 2)


def test_task_priorities_by_hand():
    # unseen → 1, last V > 0 → 1, last V = 0 → the zero weight
    assert task_priorities(["a", "b", "c"], {"b": 0.25, "c": 0.0}, 0.1) == [1.0, 1.0, 0.1]


def test_weighted_mix_batch_prefers_tasks_with_variance():
    rng = np.random.default_rng(0)
    pool = [f"t{i}" for i in range(8)]
    weights = task_priorities(pool, {f"t{i}": 0.0 for i in range(6)}, 0.01)  # t6, t7 teach
    counts = {t: 0 for t in pool}
    for _ in range(300):
        for t in mix_batch(pool, [], 2, 0.0, rng, weights):
            counts[t] += 1
    assert counts["t6"] + counts["t7"] > 0.8 * 600  # by hand: ≈ 0.98 of draws with w = 0.01
    # without replacement while the positive weights last, so a batch of 2 holds t6 and t7 often
    batch = mix_batch(pool, [], 8, 0.0, np.random.default_rng(1), weights)
    assert sorted(batch) == sorted(pool)  # a batch as large as the pool takes every task once
    with pytest.raises(ValueError):
        mix_batch(pool, [], 2, 0.0, rng, [0.0] * 8)
