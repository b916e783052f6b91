"""Advantages, losses and estimators: values computed by hand, and a slow reference loop."""

from __future__ import annotations

import math

import pytest
import torch

from dreamgym_cli.errors import InputError
from dreamgym_cli.rl.algorithms import (aggregate_loss, broadcast_to_tokens, entropy_from_logits,
                                        gae, grpo_advantages, kl_penalty, masked_mean, masked_sum,
                                        masked_whiten, policy_loss_clipped, token_logprobs,
                                        value_loss_clipped)

D = torch.float64


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


def close(a, b, tol=1e-9) -> bool:
    return torch.allclose(torch.as_tensor(a, dtype=D), torch.as_tensor(b, dtype=D), atol=tol,
                          rtol=0)


# ------------------------------------------------------------------------------- masked reductions

def test_masked_mean_and_sum_by_hand():
    v = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    m = torch.tensor([[1, 1, 0], [0, 1, 0]])
    assert masked_sum(v, m).item() == 1 + 2 + 5
    assert masked_mean(v, m).item() == pytest.approx(8 / 3)
    assert close(masked_mean(v, m, dim=-1), [1.5, 5.0])
    assert close(masked_sum(v, m, dim=0), [1.0, 7.0, 0.0])
    assert masked_mean(v, torch.zeros_like(m)).item() == 0.0  # nothing selected → 0, not nan


def test_masked_entries_do_not_matter_even_when_inf_or_nan():
    v = t([[1.0, float("inf")], [float("nan"), 4.0]])
    m = torch.tensor([[True, False], [False, True]])
    assert masked_mean(v, m).item() == 2.5
    w = masked_whiten(v, m)
    # two values 1 and 4: mean 2.5, unbiased var = (1.5² + 1.5²)/1 = 4.5
    assert close(w, [[-1.5 / math.sqrt(4.5 + 1e-8), 0.0], [0.0, 1.5 / math.sqrt(4.5 + 1e-8)]])


# ----------------------------------------------------------------------------------------- GRPO

def test_grpo_advantages_by_hand():
    # group "a": rewards 1,0,0,0 → mean 0.25; unbiased var = (0.75² + 3·0.25²)/3 = 0.25, std 0.5
    #   advantages (1 − 0.25)/0.5 = 1.5 and (0 − 0.25)/0.5 = −0.5
    # group "b": 1,1 → all equal → 0;  group "c": a single rollout → 0
    rewards = t([1, 0, 1, 0, 1, 0, 0.3])
    groups = ["a", "a", "b", "a", "b", "a", "c"]
    # a = [1, 0, 0, 0] (positions 0, 1, 3, 5), b = [1, 1] (2, 4), c = [0.3]
    adv = grpo_advantages(rewards, groups, eps=0.0)
    assert close(adv, [1.5, -0.5, 0.0, -0.5, 0.0, -0.5, 0.0])
    # without std normalisation (Dr. GRPO) just r − mean
    assert close(grpo_advantages(rewards, groups, norm_std=False),
                 [0.75, -0.25, 0.0, -0.25, 0.0, -0.25, 0.0])


def test_grpo_equal_rewards_give_exact_zeros():
    # 0.1 three times: a naive (r − mean) would leave ~1e-17 residues divided by a tiny std
    adv = grpo_advantages(t([0.1, 0.1, 0.1, 0.7, 0.7]), torch.tensor([3, 3, 3, 9, 9]))
    assert torch.equal(adv, torch.zeros(5, dtype=D))


def reference_grpo(rewards: list[float], groups: list[int], eps: float) -> list[float]:
    out = []
    for i, r in enumerate(rewards):
        members = [rewards[j] for j in range(len(rewards)) if groups[j] == groups[i]]
        if len(members) < 2 or max(members) == min(members):
            out.append(0.0)
            continue
        mean = sum(members) / len(members)
        std = math.sqrt(sum((x - mean) ** 2 for x in members) / (len(members) - 1))
        out.append((r - mean) / (std + eps))
    return out


def test_grpo_matches_a_slow_loop_on_random_inputs():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        n = int(torch.randint(1, 40, (1,), generator=gen))
        rewards = torch.randint(0, 3, (n,), generator=gen).to(D) / 2
        groups = torch.randint(0, 6, (n,), generator=gen)
        expected = reference_grpo(rewards.tolist(), groups.tolist(), 1e-6)
        assert close(grpo_advantages(rewards, groups), expected)


def test_broadcast_puts_the_advantage_on_generated_tokens_only():
    mask = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1]])
    assert close(broadcast_to_tokens(t([2.0, -1.0]), mask),
                 [[0, 2.0, 2.0, 0], [-1.0, 0, 0, -1.0]])


# ------------------------------------------------------------------------------------------ GAE

def test_gae_by_hand():
    # one episode of 3 turns then padding; γ = 0.9, λ = 0.5
    # δ2 = 1 + 0.9·0 − 0.5 = 0.5          A2 = 0.5
    # δ1 = 0 + 0.9·0.5 − 0.2 = 0.25       A1 = 0.25 + 0.45·0.5 = 0.475
    # δ0 = 0 + 0.9·0.2 − 0.1 = 0.08       A0 = 0.08 + 0.45·0.475 = 0.29375
    rewards = t([[0.0, 0.0, 1.0, 99.0]])
    values = t([[0.1, 0.2, 0.5, 99.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    assert close(adv, [[0.29375, 0.475, 0.5, 0.0]])
    assert close(ret, [[0.39375, 0.675, 1.0, 0.0]])


def test_gae_with_lambda_and_gamma_one_is_returns_to_go_minus_values():
    gen = torch.Generator().manual_seed(1)
    rewards = torch.rand(5, 7, generator=gen, dtype=D)
    values = torch.rand(5, 7, generator=gen, dtype=D)
    lengths = [7, 3, 1, 5, 0]
    mask = torch.tensor([[1] * n + [0] * (7 - n) for n in lengths])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    to_go = torch.where(mask.bool(), rewards, 0).flip(1).cumsum(1).flip(1)
    assert close(adv, torch.where(mask.bool(), to_go - values, 0))
    assert close(ret, torch.where(mask.bool(), to_go, 0))


def reference_gae(rewards, values, mask, gamma, lam):
    b, n = len(rewards), len(rewards[0])
    adv = [[0.0] * n for _ in range(b)]
    for i in range(b):
        turns = [k for k in range(n) if mask[i][k]]  # masked turns are skipped
        running, next_value = 0.0, 0.0
        for k in reversed(turns):
            delta = rewards[i][k] + gamma * next_value - values[i][k]
            running = delta + gamma * lam * running
            adv[i][k] = running
            next_value = values[i][k]
    return adv


def test_gae_matches_a_slow_loop_and_ignores_masked_entries():
    gen = torch.Generator().manual_seed(2)
    rewards = torch.randn(6, 9, generator=gen, dtype=D)
    values = torch.randn(6, 9, generator=gen, dtype=D)
    mask = torch.rand(6, 9, generator=gen) > 0.3  # holes too, not only trailing padding
    adv, ret = gae(rewards, values, mask, gamma=0.97, lam=0.9)
    expected = reference_gae(rewards.tolist(), values.tolist(), mask.tolist(), 0.97, 0.9)
    assert close(adv, expected)
    assert close(ret, torch.where(mask, adv + values, 0))
    junk = torch.where(mask, rewards, float("nan")), torch.where(mask, values, float("inf"))
    adv2, ret2 = gae(*junk, mask, gamma=0.97, lam=0.9)
    assert torch.equal(adv, adv2) and torch.equal(ret, ret2)


# -------------------------------------------------------------------------------- policy / value

def test_policy_loss_by_hand():
    # ε = 0.2. token 1: A = +1, ρ = e^0.5 ≈ 1.6487 → clipped to 1.2: max(−1.6487, −1.2) = −1.2
    # token 2: A = −1, ρ = e^−0.5 ≈ 0.6065 → clip 0.8: max(0.6065, 0.8) = 0.8 (clipped)
    # token 3: A = +2, ρ = 1: −2 (not clipped);  token 4 masked
    # token-mean: (−1.2 + 0.8 − 2) / 3 = −0.8;  clip fraction 2/3
    logp_old = t([[0.0, 0.0, -1.0, 5.0]])
    logp_new = t([[0.5, -0.5, -1.0, -5.0]])
    adv = t([[1.0, -1.0, 2.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, clip_fraction, approx_kl = policy_loss_clipped(logp_new, logp_old, adv, mask, 0.2)
    assert loss.item() == pytest.approx(-0.8)
    assert clip_fraction.item() == pytest.approx(2 / 3)
    # k3 of old‖new per token: (ρ − 1) − log ρ → e^.5 − 1.5, e^−.5 − .5, 0
    assert approx_kl.item() == pytest.approx((math.exp(0.5) - 1.5 + math.exp(-0.5) - 0.5) / 3)


def test_clip_higher_only_widens_the_upper_bound():
    # token 1 of the test above with ε_high = 0.8: ρ = 1.6487 < 1.8 → loss −1.6487, not clipped
    loss, clip_fraction, _ = policy_loss_clipped(t([[0.5]]), t([[0.0]]), t([[1.0]]),
                                                 torch.tensor([[1]]), 0.2, clip_eps_high=0.8)
    assert loss.item() == pytest.approx(-math.exp(0.5))
    assert clip_fraction.item() == 0.0


def reference_policy_loss(new, old, adv, mask, eps, eps_high):
    losses, clipped = [], []
    for i in range(len(new)):
        for k in range(len(new[0])):
            if not mask[i][k]:
                continue
            ratio = math.exp(new[i][k] - old[i][k])
            a = -adv[i][k] * ratio
            b = -adv[i][k] * min(max(ratio, 1 - eps), 1 + eps_high)
            losses.append(max(a, b))
            clipped.append(b > a)
    return sum(losses) / len(losses), sum(clipped) / len(clipped)


def test_policy_loss_matches_a_slow_loop_and_ignores_masked_entries():
    gen = torch.Generator().manual_seed(3)
    new = torch.randn(4, 8, generator=gen, dtype=D) * 0.3
    old = torch.randn(4, 8, generator=gen, dtype=D) * 0.3
    adv = torch.randn(4, 8, generator=gen, dtype=D)
    mask = torch.rand(4, 8, generator=gen) > 0.4
    loss, frac, _ = policy_loss_clipped(new, old, adv, mask, 0.2, clip_eps_high=0.28)
    exp_loss, exp_frac = reference_policy_loss(new.tolist(), old.tolist(), adv.tolist(),
                                               mask.tolist(), 0.2, 0.28)
    assert loss.item() == pytest.approx(exp_loss) and frac.item() == pytest.approx(exp_frac)
    junk_new = torch.where(mask, new, float("nan"))
    junk_adv = torch.where(mask, adv, float("inf"))
    assert policy_loss_clipped(junk_new, old, junk_adv, mask, 0.2, 0.28)[0].item() == loss.item()


def test_policy_loss_gradient_reaches_only_generated_tokens():
    new = torch.zeros(1, 3, dtype=D, requires_grad=True)
    loss, _, _ = policy_loss_clipped(new, torch.zeros(1, 3, dtype=D), t([[1.0, 1.0, 1.0]]),
                                     torch.tensor([[1, 0, 1]]), 0.2)
    loss.backward()
    # d/dρ of −A·ρ at ρ = 1 is −1, averaged over 2 tokens → −0.5 each; the masked one gets 0
    assert close(new.grad, [[-0.5, 0.0, -0.5]])


def test_value_loss_by_hand():
    # ε = 0.5. entry 1: V = 2, V_old = 0 → V_clip = 0.5, R = 1: max(1², 0.5²) = 1 → ½ = 0.5
    # entry 2: V = 0.9, V_old = 0 → V_clip = 0.5, R = 3: max(2.1², 2.5²) = 6.25 → 3.125 (clipped)
    # entry 3: V = V_old = 0, R = 1: both errors 1 (a tie is not clipping) → ½ = 0.5
    # token-mean over 3 entries: (0.5 + 3.125 + 0.5)/3 = 1.375; clip fraction 1/3
    loss, frac = value_loss_clipped(t([[2.0, 0.9, 0.0, 7.0]]), t([[0.0, 0.0, 0.0, 0.0]]),
                                    t([[1.0, 3.0, 1.0, -7.0]]), torch.tensor([[1, 1, 1, 0]]), 0.5)
    assert loss.item() == pytest.approx(1.375)
    assert frac.item() == pytest.approx(1 / 3)


def test_loss_aggregation_modes_by_hand():
    per_token = t([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])  # row 3 generated nothing
    assert aggregate_loss(per_token, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate_loss(per_token, mask, "seq-mean-token-sum").item() == pytest.approx(
        (6 + 4) / 2)
    assert aggregate_loss(per_token, mask, "seq-mean-token-mean").item() == pytest.approx(
        (2 + 4) / 2)
    with pytest.raises(InputError, match="did you mean 'token-mean'"):
        aggregate_loss(per_token, mask, "token_mean")


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_masked_entries_never_change_losses(loss_agg):
    gen = torch.Generator().manual_seed(7)
    values, old, returns, per_token = torch.randn(4, 3, 6, generator=gen, dtype=D)
    mask = torch.rand(3, 6, generator=gen) > 0.5
    mask[2] = False  # a sequence with no generated token
    junk = torch.full_like(values, float("nan"))
    clean = value_loss_clipped(values, old, returns, mask, 0.2, loss_agg)
    dirty = value_loss_clipped(torch.where(mask, values, junk), torch.where(mask, old, junk),
                               torch.where(mask, returns, -junk), mask, 0.2, loss_agg)
    assert torch.equal(torch.stack(clean), torch.stack(dirty))
    assert torch.equal(aggregate_loss(per_token, mask, loss_agg),
                       aggregate_loss(torch.where(mask, per_token, float("inf")), mask, loss_agg))
    # the slow loop for the aggregation itself
    rows = [[per_token[i, k].item() for k in range(6) if mask[i, k]] for i in range(3)]
    tokens = [x for row in rows for x in row]
    expected = {"token-mean": sum(tokens) / len(tokens),
                "seq-mean-token-sum": sum(sum(r) for r in rows if r) / sum(1 for r in rows if r),
                "seq-mean-token-mean": sum(sum(r) / len(r) for r in rows if r)
                / sum(1 for r in rows if r)}[loss_agg]
    assert aggregate_loss(per_token, mask, loss_agg).item() == pytest.approx(expected)


# ----------------------------------------------------------------------- KL, entropy, log-probs

def test_kl_estimators_by_hand():
    logp, ref = t([[-1.0, -2.0]]), t([[-2.0, -1.0]])
    assert close(kl_penalty(logp, ref, "k1"), [[1.0, -1.0]])
    assert close(kl_penalty(logp, ref, "k2"), [[0.5, 0.5]])
    # k3 with d = ref − logp = −1, +1: e^−1 + 1 − 1 = e^−1 and e − 1 − 1 = e − 2
    assert close(kl_penalty(logp, ref, "k3"), [[math.exp(-1), math.e - 2]])
    assert torch.equal(kl_penalty(ref, ref, "k3"), torch.zeros(1, 2, dtype=D))
    with pytest.raises(InputError, match="did you mean 'k3'"):
        kl_penalty(logp, ref, "k4")


def test_k1_and_k3_are_unbiased_estimates_of_the_true_kl():
    # sample tokens from π, average the estimators, compare with the exact KL(π‖π_ref)
    gen = torch.Generator().manual_seed(4)
    p = torch.softmax(torch.randn(6, generator=gen, dtype=D), 0)
    q = torch.softmax(torch.randn(6, generator=gen, dtype=D), 0)
    exact = (p * (p / q).log()).sum().item()
    tokens = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    logp, ref = p.log()[tokens][None], q.log()[tokens][None]
    for kind in ("k1", "k3"):
        assert kl_penalty(logp, ref, kind).mean().item() == pytest.approx(exact, abs=0.01)


def test_entropy_by_hand_and_with_banned_tokens():
    logits = t([[[0.0, 0.0], [0.0, float("-inf")]]])  # uniform over 2 → ln 2; one-hot → 0
    assert close(entropy_from_logits(logits), [[math.log(2), 0.0]])
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, 7, generator=gen, dtype=D)
    p = torch.softmax(x, -1)
    assert close(entropy_from_logits(x), -(p * p.log()).sum(-1))


def test_token_logprobs_match_log_softmax():
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 5, 11, generator=gen, dtype=D)
    tokens = torch.randint(0, 11, (2, 5), generator=gen)
    expected = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    assert close(token_logprobs(logits, tokens), expected)
    # by hand: logits [0, ln 3] → p = [1/4, 3/4]
    assert close(token_logprobs(t([[[0.0, math.log(3)]]]), torch.tensor([[1]])),
                 [[math.log(0.75)]])
