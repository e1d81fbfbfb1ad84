"""Conure's task heads on top of the backbone's hidden states.

- next_item (T1): untied output layer, sampled softmax in training (StackRec's shared
  ``SampledSoftmaxHead``: a share of the items, one sample per batch, accidental hits masked),
  full softmax scores in evaluation.
- item_rec: a new target table scored by dot product with the hidden state at an appended
  separator; BPR loss with negatives drawn by training popularity rank (``PopularityRankSampler``).
- profile: a linear label head on the hidden state at the separator, cross-entropy.

The separator is a learnable vector owned by the head (ours): appending a per-task vector keeps
old tasks' inputs unchanged and needs no row in the frozen item table. Target tables and output
layers live in the dense part (scored in full at evaluation; ours).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distrec.models.sampled_softmax import SampledSoftmaxHead


class NextItemHead(SampledSoftmaxHead):
    """T1: the shared sampled-softmax output layer (distrec.models.sampled_softmax), applied at
    every position; ``valid`` [B, L] marks positions with a real input and target."""

    kind = "next_item"

    def __init__(self, channels: int, num_items: int, sampled_share: float):
        super().__init__(channels, num_items, sampled_share)

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        c = hidden.shape[-1]
        return super().loss(hidden.reshape(-1, c), targets.reshape(-1), valid.reshape(-1).to(hidden.dtype))


class PopularityRankSampler(nn.Module):
    """Draws target ids by popularity rank r (0 = the most frequent in training), r = 0..N-1:

    - ``exponential_rank`` (the authors'): P(r) ∝ exp(-(r + 1) / (ρN));
    - ``log_uniform_rank``: P(r) ∝ log((r + 2) / (r + 1)) (Zipf-like);
    - ``uniform``: every id alike.

    Ranks come from ``set_counts`` (training target counts; the recipe calls it before training);
    until then rank r is id r + 1. Sampling inverts the exact discrete CDF (``searchsorted``).
    """

    def __init__(self, num_ids: int, distribution: str = "exponential_rank", rho: float = 0.3):
        super().__init__()
        if not rho > 0:
            raise ValueError(f"rank sampler: rho must be > 0, got {rho}")
        n = max(num_ids - 1, 1)  # id 0 (padding) is never drawn
        self.distribution, self.rho = str(distribution), rho
        self.register_buffer("rank_to_id", torch.arange(1, n + 1), persistent=False)
        self.register_buffer("cdf", torch.cumsum(self.rank_probabilities(n), 0), persistent=False)

    def rank_probabilities(self, n: int) -> torch.Tensor:
        r = torch.arange(n, dtype=torch.float64)
        if self.distribution == "exponential_rank":
            weights = torch.exp(-(r + 1) / (self.rho * n))
        elif self.distribution == "log_uniform_rank":
            weights = torch.log((r + 2) / (r + 1))
        elif self.distribution == "uniform":
            weights = torch.ones(n, dtype=torch.float64)
        else:
            raise ValueError(f"rank sampler: unknown distribution {self.distribution!r}")
        return weights / weights.sum()

    def set_counts(self, counts: torch.Tensor) -> None:
        """``counts[i]``: training occurrences of id i (id 0, padding, is never drawn); ties keep id order."""
        if counts.numel() != self.rank_to_id.numel() + 1:
            raise ValueError(f"rank sampler: expected {self.rank_to_id.numel() + 1} counts, got {counts.numel()}")
        order = torch.sort(counts[1:].to(torch.float64), descending=True, stable=True).indices + 1
        self.rank_to_id = order.to(self.rank_to_id.device)

    def sample(self, shape: tuple[int, ...], device) -> torch.Tensor:
        u = torch.rand(shape, device=self.cdf.device, dtype=torch.float64)
        rank = torch.searchsorted(self.cdf, u * self.cdf[-1], right=True).clamp_(max=self.cdf.numel() - 1)
        return self.rank_to_id[rank].to(device)


class ItemRecHead(nn.Module):
    kind = "item_rec"

    def __init__(self, channels: int, num_targets: int, negatives: int, sampler: PopularityRankSampler,
                 target_l2: float = 0.0):
        super().__init__()
        self.separator = nn.Parameter(torch.randn(channels) * 0.02)
        self.targets = nn.Embedding(num_targets, channels)
        nn.init.normal_(self.targets.weight, std=0.02)
        self.negatives = negatives
        self.sampler = sampler
        self.target_l2 = target_l2

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """BPR: -log σ(h·e_pos − h·e_neg), averaged over real rows and their negatives, plus
        ``target_l2`` × the mean squared norm of the target rows the batch looks up (the
        authors' L2 on the target table; it touches only rows in the batch, as theirs does)."""
        neg = self.sampler.sample((targets.shape[0], self.negatives), hidden.device)
        pos_rows, neg_rows = self.targets(targets), self.targets(neg)
        pos_score = (hidden * pos_rows).sum(-1, keepdim=True)
        neg_score = torch.einsum("bc,bnc->bn", hidden, neg_rows)
        keep = (weights[:, None] > 0) & (neg != targets[:, None])
        loss = -F.logsigmoid(pos_score - neg_score)
        bpr = (loss * keep).sum() / keep.sum().clamp(min=1)
        if self.target_l2 <= 0:
            return bpr
        return bpr + self.target_l2 * (pos_rows.pow(2).sum(-1).mean() + neg_rows.pow(2).sum(-1).mean())

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        scores = hidden @ self.targets.weight.T
        scores[:, 0] = float("-inf")
        return scores


class ProfileHead(nn.Module):
    kind = "profile"

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.separator = nn.Parameter(torch.randn(channels) * 0.02)
        self.classifier = nn.Linear(channels, num_classes)

    def loss(self, hidden: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        per_row = F.cross_entropy(self.classifier(hidden), labels, reduction="none")
        return (per_row * weights).sum() / weights.sum().clamp(min=1)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(hidden)


def build_head(kind: str, channels: int, num_outputs: int, method_cfg) -> nn.Module:
    if kind == "next_item":
        return NextItemHead(channels, num_outputs, method_cfg.sampled_share)
    if kind == "item_rec":
        sampler = PopularityRankSampler(num_outputs, method_cfg.negative_sampler, method_cfg.sampler_rho)
        return ItemRecHead(channels, num_outputs, method_cfg.bpr_negatives, sampler, method_cfg.target_l2)
    if kind == "profile":
        return ProfileHead(channels, num_outputs)
    raise ValueError(f"unknown task kind {kind!r}")
