"""Conure's backbone: NextItNet with pre-activation residual blocks whose convs carry task masks.

Block (code): LN → ReLU → conv(d) → LN → ReLU → conv(2d), output x + branch (no α, unlike the
StackRec NextItNet block, so the two are separate modules).
"""

from __future__ import annotations

import torch
from torch import nn

from distrec.methods.conure.masks import PHASES, MaskedCausalConv1d


class PreActivationBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int, num_tasks: int, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels, eps=eps)
        self.conv1 = MaskedCausalConv1d(channels, kernel_size, dilation, num_tasks)
        self.norm2 = nn.LayerNorm(channels, eps=eps)
        self.conv2 = MaskedCausalConv1d(channels, kernel_size, 2 * dilation, num_tasks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, C]
        h = self.conv1(torch.relu(self.norm1(x)).transpose(1, 2)).transpose(1, 2)
        h = self.conv2(torch.relu(self.norm2(h)).transpose(1, 2)).transpose(1, 2)
        return x + h


class ConureBackbone(nn.Module):
    def __init__(self, model_cfg, num_tasks: int):
        super().__init__()
        dilations = [model_cfg.block_dilations[i % len(model_cfg.block_dilations)]
                     for i in range(model_cfg.blocks)]
        self.blocks = nn.ModuleList(
            PreActivationBlock(model_cfg.channels, model_cfg.kernel_size, d, num_tasks,
                               model_cfg.layer_norm_eps)
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def convs(self) -> list[MaskedCausalConv1d]:
        return [m for m in self.modules() if isinstance(m, MaskedCausalConv1d)]

    def norms(self) -> list[nn.LayerNorm]:
        return [m for m in self.modules() if isinstance(m, nn.LayerNorm)]

    def set_mode(self, task: int, phase: str) -> None:
        """Task ``task`` (1-based) in ``phase`` (train | retrain | infer | plain) for every conv."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        for conv in self.convs():
            conv.task, conv.phase = task, phase

    def add_tasks(self, num_tasks: int) -> None:
        for conv in self.convs():
            conv.add_tasks(num_tasks)
