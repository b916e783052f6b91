"""Advantages, losses and estimators for policy learning: pure tensor functions (verl style).

Shapes in comments: B = sequences (episodes, or turns), T = token positions (turns for GAE),
V = vocabulary. A mask is True/1 where a position counts — a token the policy generated, a real
turn — and False/0 elsewhere (prompt and observation tokens, padding). Masked entries never
influence a result, even when they hold inf or nan: they are selected out with `torch.where`,
never multiplied by 0 (0 · inf = nan).

Loss aggregation over the generated tokens (`aggregate_loss`, the `loss_agg` argument):
  token-mean           Σ over all generated tokens of the batch / their number. Long answers weigh
                       more; every token weighs the same (DAPO, verl's default).
  seq-mean-token-sum   per sequence Σ over its generated tokens, then the mean over sequences that
                       have any (Dr. GRPO's unbiased form, up to its constant normaliser).
  seq-mean-token-mean  per sequence the mean over its generated tokens, then the mean over
                       sequences (the original GRPO paper).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from dreamgym_cli.errors import unknown_name

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")
KL_KINDS = ("k1", "k2", "k3")
LOG_RATIO_LIMIT = 20.0  # exp(±20) keeps ratios finite; only absurd policy jumps are affected


def _bool(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ of `values` where `mask` is set.   values, mask [...] (same shape) → scalar or reduced."""
    kept = torch.where(_bool(mask), values, torch.zeros_like(values))
    return kept.sum() if dim is None else kept.sum(dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` where `mask` is set (0 where nothing is set); same shapes as masked_sum."""
    count = _bool(mask).sum() if dim is None else _bool(mask).sum(dim)
    return masked_sum(values, mask, dim) / count.clamp_min(1).to(values.dtype)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(values − mean) / std over the masked entries (unbiased std); masked-out entries → 0."""
    m = _bool(mask)
    mean = masked_mean(values, m)
    count = m.sum().clamp_min(2).to(values.dtype)
    var = masked_sum((values - mean) ** 2, m) / (count - 1)
    return torch.where(m, (values - mean) * torch.rsqrt(var + eps), torch.zeros_like(values))


def aggregate_loss(per_token: torch.Tensor, mask: torch.Tensor,
                   loss_agg: str = "token-mean") -> torch.Tensor:
    """One scalar loss from per-token losses [B, T] over the generated tokens (see module doc)."""
    m = _bool(mask)
    if loss_agg == "token-mean":
        return masked_mean(per_token, m)
    has_tokens = m.any(dim=-1)  # [B]
    if loss_agg == "seq-mean-token-sum":
        per_seq = masked_sum(per_token, m, dim=-1)  # [B]
    elif loss_agg == "seq-mean-token-mean":
        per_seq = masked_mean(per_token, m, dim=-1)  # [B]
    else:
        raise unknown_name("loss aggregation", loss_agg, LOSS_AGG_MODES)
    return masked_mean(per_seq, has_tokens)


def _group_index(group_ids: Sequence[Hashable] | torch.Tensor, n: int) -> torch.Tensor:
    """Group ids of any hashable kind → dense indices 0..G−1 [n] (in order of first appearance)."""
    if isinstance(group_ids, torch.Tensor):
        keys = group_ids.reshape(-1).tolist()
    else:
        keys = list(group_ids)
    if len(keys) != n:
        raise ValueError(f"group_ids has {len(keys)} entries for {n} rewards")
    dense: dict[Hashable, int] = {}
    return torch.tensor([dense.setdefault(k, len(dense)) for k in keys], dtype=torch.long)


def grpo_advantages(rewards: torch.Tensor, group_ids: Sequence[Hashable] | torch.Tensor,
                    eps: float = 1e-6, norm_std: bool = True) -> torch.Tensor:
    """GRPO outcome advantages: (r − mean) / (std + eps) within each group.   rewards [B] → [B].

    std is the unbiased (n − 1) standard deviation, as in verl and TRL. `norm_std=False` gives
    r − mean (Dr. GRPO). A group with one member, or whose rewards are all equal, gets exactly 0:
    it carries no signal about which of its rollouts was better.
    """
    r = rewards.reshape(-1)
    r = r if r.is_floating_point() else r.to(torch.get_default_dtype())
    idx = _group_index(group_ids, r.numel())  # [B]
    n_groups = int(idx.max()) + 1 if idx.numel() else 0
    zeros = torch.zeros(n_groups, dtype=r.dtype)
    counts = zeros.index_add(0, idx, torch.ones_like(r))  # [G]
    mean = zeros.index_add(0, idx, r) / counts.clamp_min(1)  # [G]
    dev = r - mean[idx]  # [B]
    var = zeros.index_add(0, idx, dev**2) / (counts - 1).clamp_min(1)  # [G]
    top = torch.full_like(zeros, -torch.inf).scatter_reduce(0, idx, r, "amax")
    bottom = torch.full_like(zeros, torch.inf).scatter_reduce(0, idx, r, "amin")
    no_signal = (counts[idx] < 2) | (top[idx] == bottom[idx])  # [B]
    adv = dev / (var[idx].sqrt() + eps) if norm_std else dev
    return torch.where(no_signal, torch.zeros_like(adv), adv)


def broadcast_to_tokens(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sequence's advantage on each of its generated tokens.   [B], [B, T] → [B, T]."""
    return torch.where(_bool(mask), advantages[:, None], torch.zeros((), dtype=advantages.dtype))


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95, last_values: torch.Tensor | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over turns.   rewards, values, mask [B, N] → 2 × [B, N].

    mask marks real turns (an episode's turns, then padding). The value after an episode's last
    real turn is `last_values` [B] — V(s_N) for an episode a step limit cut short (bootstrap),
    0 for one the env ended — and 0 for all when not given; masked turns are skipped, not treated
    as boundaries.
    δ_t = r_t + γ·V_{t+1} − V_t,  A_t = δ_t + γλ·A_{t+1},  returns R_t = A_t + V_t.
    Masked entries of both outputs are 0.
    """
    m = _bool(mask)
    zero = torch.zeros((), dtype=values.dtype)
    r = torch.where(m, rewards.to(values.dtype), zero)
    v = torch.where(m, values, zero)
    advantages = torch.zeros_like(v)
    next_value = (torch.zeros_like(v[:, 0]) if last_values is None
                  else last_values.to(v.dtype).reshape(-1).clone())  # [B]
    running = torch.zeros_like(v[:, 0])  # [B]
    for t in reversed(range(v.shape[1])):
        delta = r[:, t] + gamma * next_value - v[:, t]
        candidate = delta + gamma * lam * running
        running = torch.where(m[:, t], candidate, running)
        next_value = torch.where(m[:, t], v[:, t], next_value)
        advantages[:, t] = torch.where(m[:, t], candidate, zero)
    returns = torch.where(m, advantages + v, zero)
    return advantages, returns


def policy_loss_clipped(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, clip_eps: float = 0.2,
                        clip_eps_high: float | None = None, loss_agg: str = "token-mean",
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO/GRPO clipped surrogate.   all [B, T] → (loss, clip_fraction, approx_kl) scalars.

    per token: max(−A·ρ, −A·clip(ρ, 1 − clip_eps, 1 + clip_eps_high)) with ρ = exp(logp_new −
    logp_old); clip_eps_high defaults to clip_eps (set it higher for DAPO's clip-higher).
    clip_fraction: share of generated tokens where the clipped branch is taken. approx_kl: the k3
    estimate of KL(old ‖ new), mean of (ρ − 1) − log ρ (never negative). Metrics are detached.
    """
    m = _bool(mask)
    zero = torch.zeros((), dtype=logp_new.dtype)
    log_ratio = torch.where(m, logp_new - logp_old, zero).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    ratio = torch.exp(log_ratio)
    adv = torch.where(m, advantages.to(logp_new.dtype), zero)
    high = clip_eps if clip_eps_high is None else clip_eps_high
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_eps, 1.0 + high)
    loss = aggregate_loss(torch.maximum(unclipped, clipped), m, loss_agg)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).to(logp_new.dtype), m)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, m)
    return loss, clip_fraction, approx_kl


def value_loss_clipped(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       mask: torch.Tensor, clip_eps: float = 0.2, loss_agg: str = "token-mean",
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped value loss.   all [B, T] → (loss, clip_fraction) scalars.

    per entry: ½·max((V − R)², (V_clip − R)²), V_clip = V_old + clip(V − V_old, −ε, ε).
    clip_fraction: share of entries where the clipped error is the larger (detached).
    """
    m = _bool(mask)
    zero = torch.zeros((), dtype=values.dtype)
    v = torch.where(m, values, zero)
    v_old = torch.where(m, old_values.to(values.dtype), zero)
    target = torch.where(m, returns.to(values.dtype), zero)
    v_clipped = v_old + (v - v_old).clamp(-clip_eps, clip_eps)
    unclipped_err = (v - target) ** 2
    clipped_err = (v_clipped - target) ** 2
    loss = aggregate_loss(0.5 * torch.maximum(unclipped_err, clipped_err), m, loss_agg)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped_err > unclipped_err).to(values.dtype), m)
    return loss, clip_fraction


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from sampled-token log-probs.   [B, T] → [B, T].

    k1 = log π − log π_ref (unbiased, can be negative); k2 = ½(log π − log π_ref)²;
    k3 = exp(d) − d − 1 with d = log π_ref − log π (Schulman's unbiased, non-negative estimator;
    d is clamped to ±20 to stay finite). Mask and aggregate with `aggregate_loss`.
    """
    if kind == "k1":
        return logp - ref_logp
    if kind == "k2":
        return 0.5 * (logp - ref_logp) ** 2
    if kind == "k3":
        d = (ref_logp - logp).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
        return torch.exp(d) - d - 1.0
    raise unknown_name("KL estimator", kind, KL_KINDS)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax at each position.   logits [B, T, V] → [B, T] (float32 or wider).

    −Σ p·log p, with 0·log 0 = 0 so −inf logits (banned tokens) are fine.
    """
    logp = torch.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16)
                             else logits, dim=-1)
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros((), dtype=logp.dtype)).sum(-1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) at each position.   logits [B, T, V], tokens [B, T] (long) → [B, T].

    logit − logsumexp, without materialising a second [B, T, V] log-softmax tensor.
    """
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    picked = x.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(x, dim=-1)
