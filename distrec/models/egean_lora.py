"""Per-task LoRA on the shared embedding: E_t = E + (α/r) · B_t A_t E."""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingLora(nn.Module):
    """A rank-``rank`` update of the flattened sample embedding [B, width] for one task.

    B_t starts at zero (the usual LoRA initialisation), so E_t = E until the task trains it; the
    shared embedding keeps receiving the task's gradient through the identity path."""

    def __init__(self, width: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.down = nn.Linear(width, rank, bias=False)  # A_t
        self.up = nn.Linear(rank, width, bias=False)  # B_t
        nn.init.zeros_(self.up.weight)
        self.scale = alpha / rank

    def forward(self, shared: torch.Tensor) -> torch.Tensor:
        return shared + self.scale * self.up(self.down(shared))
