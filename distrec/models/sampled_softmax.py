"""Next-item output layer: sampled softmax for training, full softmax for evaluation.

Items are ids ``1 .. num_items - 1``; id 0 is padding and is never sampled, never scored.

Training (NextItNet's recipe): ONE set of negatives is drawn per batch and shared by every row
(every position of every sequence), ``sample_fraction`` of the catalogue (20 % by default),
uniformly without replacement. Each row's logits are [its target, the shared negatives]; a
negative that equals the row's target is masked (``remove_accidental_hits``, ours). The cost is
``rows x (1 + S) x dim`` instead of ``rows x num_items x dim``.

Evaluation: ``scores`` gives full-softmax logits over every item (padding at -inf), ready for
``distrec.metrics.RankingMetricAccumulator``.

Usage::

    head = SampledSoftmaxHead(dim=64, num_items=V)         # untied output layer (weight [V, dim])
    loss = head.loss(hidden, targets, weights)             # hidden [N, dim], targets [N], weights [N]
    scores = head.scores(hidden_last)                      # [B, V]

The free functions ``shared_negatives``, ``sampled_softmax_loss`` and ``full_softmax_logits``
work on any ``nn.Linear(dim, num_items)`` for callers with their own output layer.
"""

from __future__ import annotations

import torch
from torch import nn

PADDING_ID = 0


def num_negatives(num_items: int, fraction: float) -> int:
    """How many negatives a batch shares: ``fraction`` of the real items, at least 1."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"sample_fraction must be in (0, 1], got {fraction}")
    return max(1, min(num_items - 1, round(fraction * (num_items - 1))))


def shared_negatives(num_items: int, fraction: float, device: torch.device | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """[S] distinct item ids drawn uniformly from 1 .. num_items - 1 (one draw per batch)."""
    count = num_negatives(num_items, fraction)
    perm = torch.randperm(num_items - 1, generator=generator)[:count] + 1
    return perm.to(device) if device is not None else perm


def sampled_softmax_loss(hidden: torch.Tensor, targets: torch.Tensor, output: nn.Linear,
                         negatives: torch.Tensor, weights: torch.Tensor | None = None,
                         remove_accidental_hits: bool = True) -> torch.Tensor:
    """Weighted mean over rows of -log softmax(target) among [target, shared negatives].

    hidden [N, dim]; targets [N] item ids; negatives [S]; weights [N] (0 rows add nothing).
    """
    pos = (hidden * output.weight[targets]).sum(-1) + output.bias[targets]  # [N]
    neg = hidden @ output.weight[negatives].T + output.bias[negatives]  # [N, S]
    if remove_accidental_hits:
        neg = neg.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([pos[:, None], neg], dim=1)
    per_row = torch.logsumexp(logits, dim=1) - pos
    if weights is None:  # an empty batch (padding only) gives 0, not NaN
        return per_row.sum() / max(per_row.numel(), 1)
    return (per_row * weights).sum() / weights.sum().clamp(min=1.0)


def full_softmax_logits(hidden: torch.Tensor, output: nn.Linear) -> torch.Tensor:
    """[N, num_items] logits over the whole catalogue; the padding id scores -inf."""
    logits = output(hidden)
    logits[:, PADDING_ID] = float("-inf")
    return logits


class SampledSoftmaxHead(nn.Module):
    """An untied output layer (``output``: Linear(dim, num_items)) with both losses above."""

    def __init__(self, dim: int, num_items: int, sample_fraction: float = 0.2,
                 remove_accidental_hits: bool = True) -> None:
        super().__init__()
        if num_items < 2:
            raise ValueError(f"num_items must be >= 2 (id 0 is padding), got {num_items}")
        num_negatives(num_items, sample_fraction)  # validates the fraction early
        self.num_items = num_items
        self.sample_fraction = sample_fraction
        self.remove_accidental_hits = remove_accidental_hits
        self.output = nn.Linear(dim, num_items)

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        negatives = shared_negatives(self.num_items, self.sample_fraction, hidden.device, generator)
        return sampled_softmax_loss(hidden, targets, self.output, negatives, weights,
                                    self.remove_accidental_hits)

    def full_loss(self, hidden: torch.Tensor, targets: torch.Tensor,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy over the whole catalogue (for comparisons; training uses ``loss``)."""
        per_row = nn.functional.cross_entropy(full_softmax_logits(hidden, self.output), targets,
                                              reduction="none")
        if weights is None:
            return per_row.sum() / max(per_row.numel(), 1)
        return (per_row * weights).sum() / weights.sum().clamp(min=1.0)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        return full_softmax_logits(hidden, self.output)
