"""Entire-space CVR losses (ESMM's CTCVR, ESCM²'s IPS and DR, EGEAN's PVDR, the imputation loss)
and the MMD alignment term."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

# --- Entire-space CVR losses: ESMM's CTCVR, ESCM²'s IPS and DR, EGEAN's PVDR and the imputation loss.
#
# Every loss takes per-row tensors and a ``real`` mask (0 for padding rows, which add nothing).
# Notation: o = click (the CVR label is observed), r = conversion, r̂ = CVR logit, p̂ = CTR
# probability (the propensity), ê = imputed CVR error, e = BCE(r, r̂).


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the rows where ``mask`` is 1."""
    per_row = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (per_row * mask).sum() / mask.sum().clamp(min=1.0)


def ctcvr_loss(ctr_logit: torch.Tensor, cvr_logit: torch.Tensor, conversion: torch.Tensor,
               real: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """ESMM: BCE of p̂CTR · p̂CVR against click-and-convert, over every impression."""
    log_p = F.logsigmoid(ctr_logit) + F.logsigmoid(cvr_logit)
    log_1m_p = torch.log1p(-log_p.exp().clamp(max=1 - eps))
    per_row = -(conversion * log_p + (1 - conversion) * log_1m_p)
    return (per_row * real).sum() / real.sum().clamp(min=1.0)


def clipped_propensity(ctr_prob: torch.Tensor, floor: float, max_inverse: float) -> torch.Tensor:
    """p̃ = max(stopgrad(p̂), floor, 1/max_inverse): 1/p̃ never exceeds ``max_inverse``, and no
    gradient reaches the CTR tower through the weight."""
    return ctr_prob.detach().clamp(min=max(floor, 1.0 / max_inverse))


def cvr_error(cvr_logit: torch.Tensor, conversion: torch.Tensor) -> torch.Tensor:
    """e_i = BCE(r_i, r̂_i) per row (meaningful on clicked rows, where r is observed)."""
    return F.binary_cross_entropy_with_logits(cvr_logit, conversion, reduction="none")


def ips_loss(error: torch.Tensor, click: torch.Tensor, propensity: torch.Tensor,
             real: torch.Tensor) -> torch.Tensor:
    """ESCM²-IPS: Σ o e / p̃ over |D| (every real impression)."""
    return (real * click * error / propensity).sum() / real.sum().clamp(min=1.0)


def pvdr_loss(error: torch.Tensor, imputed: torch.Tensor, click: torch.Tensor,
              propensity: torch.Tensor, real: torch.Tensor, lam: float) -> torch.Tensor:
    """PVDR: Σ [ê + o (e − ê)/p̃] / (λ|D| + (1 − λ) Σ o/p̃).

    λ = 1 is DR (ESCM²-DR), λ = 0 self-normalised DR. ``propensity`` is already clipped and
    detached (``clipped_propensity``), so the denominator carries no gradient."""
    o = real * click
    numerator = (real * imputed + o * (error - imputed) / propensity).sum()
    denominator = lam * real.sum() + (1.0 - lam) * (o / propensity).sum()
    return numerator / denominator.clamp(min=1e-12)


def imputation_loss(error: torch.Tensor, imputed: torch.Tensor, click: torch.Tensor,
                    propensity: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Σ o (e − ê)² / p̃ over |D|; e is detached, so this trains the imputation tower only (as in
    DR-JL: letting it reach the CVR tower inflates its predictions)."""
    o = real * click
    return (o * (error.detach() - imputed) ** 2 / propensity).sum() / real.sum().clamp(min=1.0)


def imputed_label_error(cvr_logit: torch.Tensor, pseudo_label: torch.Tensor) -> torch.Tensor:
    """ê_i = BCE(r̃_i, r̂_i): the CVR prediction's error against the imputation tower's label r̃
    (a constant here), defined on every impression, so through the DR term's ê unclicked rows
    train the CVR tower too (the imputed-label DR variant; ours, after DR-JL's pseudo-labels)."""
    return F.binary_cross_entropy_with_logits(cvr_logit, pseudo_label.detach(), reduction="none")


def imputed_label_loss(imputation_logit: torch.Tensor, conversion: torch.Tensor, click: torch.Tensor,
                       propensity: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Σ o BCE(r, r̃) / p̃ over |D|: the imputation tower learns the conversion label on clicked
    rows, inverse-propensity weighted so its target is the exposure-space label."""
    o = real * click
    per_row = F.binary_cross_entropy_with_logits(imputation_logit, conversion, reduction="none")
    return (o * per_row / propensity).sum() / real.sum().clamp(min=1.0)


def pvdr_lambda(step: int | torch.Tensor, start: float, steady: float, tau: float) -> float:
    """Steady-state control: λ_t = λ_∞ + (λ_0 − λ_∞) exp(−t/τ); τ = 0 gives λ_∞ at once."""
    if tau <= 0:
        return float(steady)
    return float(steady + (start - steady) * math.exp(-float(step) / tau))


# --- MMD² between two samples with an RBF kernel whose bandwidth is the median pairwise distance.


def median_bandwidth(sq_dists: torch.Tensor) -> torch.Tensor:
    """Median squared distance over distinct pairs (the median heuristic; no gradient)."""
    n = sq_dists.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=sq_dists.device)
    values = sq_dists.detach()[off_diagonal]
    if values.numel() == 0:
        return sq_dists.new_tensor(1.0)
    return values.median().clamp(min=1e-12)


def mmd2_rbf(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Biased (V-statistic) MMD² of samples ``x`` [n, d] and ``y`` [m, d] with
    k(a, b) = exp(−‖a − b‖² / h), h = median squared distance over the pooled sample.

    The V-statistic is exactly 0 for identical samples and never negative (the kernel is
    positive definite); with an empty sample it is 0."""
    if x.shape[0] == 0 or y.shape[0] == 0:
        return x.new_zeros(())
    pooled = torch.cat([x, y])
    norms = pooled.pow(2).sum(dim=1)
    sq = (norms[:, None] + norms[None, :] - 2 * pooled @ pooled.T).clamp(min=0.0)  # smooth at 0
    kernel = torch.exp(-sq / median_bandwidth(sq))
    n = x.shape[0]
    k_xx, k_yy, k_xy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return (k_xx.mean() + k_yy.mean() - 2 * k_xy.mean()).clamp(min=0.0)
