"""Conure's task heads on top of the backbone's hidden states.

- next_item (T1): untied output layer, sampled softmax in training (StackRec's shared
  ``SampledSoftmaxHead``: a share of the items, one sample per batch, accidental hits masked),
  full softmax scores in evaluation.
- item_rec: a new target table scored by dot product with the hidden state at an appended
  separator; BPR loss with negatives from a popularity-rank (log-uniform over rank) sampler.
- profile: a linear label head on the hidden state at the separator, cross-entropy.

The separator is a learnable vector owned by the head (ours): appending a per-task vector keeps
old tasks' inputs unchanged and needs no row in the frozen item table. Target tables and output
layers live in the dense part (scored in full at evaluation; ours).
"""

from __future__ import annotations

import math

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
    """Draws ids by popularity rank r (0 = most frequent) with P(r) ∝ log((r + 2) / (r + 1))."""

    def __init__(self, num_ids: int):
        super().__init__()
        self.register_buffer("rank_to_id", torch.arange(1, max(num_ids, 2)), persistent=False)

    def set_counts(self, counts: torch.Tensor) -> None:
        """``counts[i]``: training occurrences of id i (id 0, padding, is never drawn)."""
        order = torch.sort(counts[1:].to(torch.float64), descending=True, stable=True).indices + 1
        self.rank_to_id = order.to(self.rank_to_id.device)

    def sample(self, shape: tuple[int, ...], device) -> torch.Tensor:
        n = self.rank_to_id.numel()
        u = torch.rand(shape, device=device, dtype=torch.float64)
        rank = (torch.exp(u * math.log(n + 1)) - 1).floor().long().clamp_(0, n - 1)
        return self.rank_to_id[rank]


class ItemRecHead(nn.Module):
    kind = "item_rec"

    def __init__(self, channels: int, num_targets: int, negatives: int):
        super().__init__()
        self.separator = nn.Parameter(torch.randn(channels) * 0.02)
        self.targets = nn.Embedding(num_targets, channels)
        nn.init.normal_(self.targets.weight, std=0.02)
        self.negatives = negatives
        self.sampler = PopularityRankSampler(num_targets)

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """BPR: -log σ(h·e_pos − h·e_neg), averaged over real rows and their negatives."""
        neg = self.sampler.sample((targets.shape[0], self.negatives), hidden.device)
        pos_score = (hidden * self.targets(targets)).sum(-1, keepdim=True)
        neg_score = torch.einsum("bc,bnc->bn", hidden, self.targets(neg))
        keep = (weights[:, None] > 0) & (neg != targets[:, None])
        loss = -F.logsigmoid(pos_score - neg_score)
        return (loss * keep).sum() / keep.sum().clamp(min=1)

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
        return ItemRecHead(channels, num_outputs, method_cfg.bpr_negatives)
    if kind == "profile":
        return ProfileHead(channels, num_outputs)
    raise ValueError(f"unknown task kind {kind!r}")
