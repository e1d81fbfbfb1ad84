"""MMD² between two samples with an RBF kernel whose bandwidth is the median pairwise distance."""

from __future__ import annotations

import torch


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
