"""NextItNet (Yuan et al., WSDM'19) in StackRec's form: a stack of causal dilated residual blocks.

Block (the StackRec authors' code): causal conv (kernel k, dilation d) -> LayerNorm -> ReLU ->
causal conv (dilation 2d) -> LayerNorm -> ReLU; ``out = x + alpha * branch`` with ``alpha`` a
learnable scalar initialised to 0, so a new block starts as the identity. Block i uses
``d = dilations[i % len(dilations)]`` ([1, 4] repeated). No position embedding.

Tensors are [batch, time, channels]; "causal" means position t sees positions <= t only
(left padding of (k - 1) * dilation before each convolution).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CausalConv1d(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C] -> [B, T, C]
        return self.conv(F.pad(x.transpose(1, 2), (self.left_pad, 0))).transpose(1, 2)


class NextItNetBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = CausalConv1d(channels, kernel_size, dilation)
        self.norm1 = nn.LayerNorm(channels)
        self.conv2 = CausalConv1d(channels, kernel_size, 2 * dilation)
        self.norm2 = nn.LayerNorm(channels)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = F.relu(self.norm1(self.conv1(x)))
        branch = F.relu(self.norm2(self.conv2(branch)))
        return x + self.alpha * branch


class NextItNetBody(nn.Module):
    """``blocks`` residual blocks; ``forward(x [B, T, C]) -> hidden [B, T, C]``."""

    def __init__(self, blocks: int, channels: int, kernel_size: int = 3, dilations=(1, 4)) -> None:
        super().__init__()
        if blocks < 1 or not dilations:
            raise ValueError(f"NextItNet needs blocks >= 1 and dilations, got {blocks}, {dilations}")
        self.blocks = nn.ModuleList(
            NextItNetBlock(channels, kernel_size, dilations[i % len(dilations)]) for i in range(blocks)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    @staticmethod
    def receptive_field(blocks: int, kernel_size: int = 3, dilations=(1, 4)) -> int:
        """Positions an output sees (itself included)."""
        return 1 + sum(3 * (kernel_size - 1) * dilations[i % len(dilations)] for i in range(blocks))
