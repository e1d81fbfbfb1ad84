"""Prediction towers (CTR, CVR, imputation, exposure): LeakyReLU MLPs ending in one output,
whose hidden layers may be scaled by PEPNet tower gates."""

from __future__ import annotations

import torch
from torch import nn


class Tower(nn.Module):
    def __init__(self, in_dim: int, widths: list[int], slope: float) -> None:
        super().__init__()
        dims = [in_dim, *widths]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = nn.LeakyReLU(slope)
        self.head = nn.Linear(dims[-1], 1)

    @property
    def widths(self) -> list[int]:
        return [layer.out_features for layer in self.layers]

    def forward(self, x: torch.Tensor, gates: list[torch.Tensor] | None = None) -> torch.Tensor:
        """[B, in_dim] -> [B] (a logit, or a raw value for the imputation tower)."""
        for i, layer in enumerate(self.layers):
            x = self.act(layer(x))
            if gates is not None:
                x = x * gates[i]
        return self.head(x).squeeze(-1)
