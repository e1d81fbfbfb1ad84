"""Conure's per-task binary weight masks: a masked causal conv layer, magnitude pruning among free
weights, bit-packing, and the guard that keeps frozen weights bit-exact through optimizer steps.

Effective kernel of a conv layer with weight W while task k is active (spec, "Conure"):
  train   (a): stopgrad(W⊙F_k) + W⊙(1 − F_k)     F_k = m_1 ∪ … ∪ m_{k-1} (frozen)
  retrain (c): stopgrad(W⊙F_k) + W⊙m_k
  inference for task j: W⊙(m_1 ∪ … ∪ m_j)
``plain`` (the baselines) uses W itself.

Masks are buffers ``mask_<k>`` of packed bits (uint8, 8 weights per byte, numpy bit order
"little"), so a checkpoint holds exactly ceil(numel/8) bytes per task and layer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PHASES = ("train", "retrain", "infer", "plain")


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor -> uint8 [ceil(numel/8)] (bit i of byte j is element 8j+i)."""
    bits = np.packbits(mask.detach().reshape(-1).cpu().numpy().astype(np.uint8), bitorder="little")
    return torch.from_numpy(bits)


def unpack_bits(packed: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    n = math.prod(shape)
    bits = np.unpackbits(packed.detach().cpu().numpy(), count=n, bitorder="little")
    return torch.from_numpy(bits.astype(bool)).reshape(shape).to(packed.device)


def packed_size(numel: int) -> int:
    return (numel + 7) // 8


class MaskedCausalConv1d(nn.Module):
    """Causal dilated conv over [B, C, L] whose kernel depends on the active task and phase.

    The conv has no bias: the spec freezes conv biases at 0, and a zero constant adds nothing.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, num_tasks: int):
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.num_tasks = 0
        self.task = 1
        self.phase = "plain"
        self._cache: dict = {}
        self.add_tasks(num_tasks)

    # --- masks ---------------------------------------------------------------------------
    def add_tasks(self, num_tasks: int) -> None:
        """Make room for masks of tasks 1..num_tasks (new ones empty)."""
        for k in range(self.num_tasks + 1, num_tasks + 1):
            self.register_buffer(f"mask_{k}", torch.zeros(packed_size(self.weight.numel()), dtype=torch.uint8))
        self.num_tasks = max(self.num_tasks, num_tasks)
        self._cache.clear()

    def mask(self, k: int) -> torch.Tensor:
        """m_k as a bool tensor shaped like the weight."""
        return unpack_bits(getattr(self, f"mask_{k}"), self.weight.shape)

    def set_mask(self, k: int, mask: torch.Tensor) -> None:
        getattr(self, f"mask_{k}").copy_(pack_bits(mask))
        self._cache.clear()

    def union(self, upto: int) -> torch.Tensor:
        """m_1 ∪ … ∪ m_upto (bool; all False for upto < 1)."""
        def build() -> torch.Tensor:
            out = torch.zeros(self.weight.shape, dtype=torch.bool, device=self.weight.device)
            for k in range(1, upto + 1):
                out |= self.mask(k)
            return out

        return self._cached(("union", upto), build)

    def _cached(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def invalidate(self) -> None:
        """Forget unpacked masks (after a checkpoint load wrote the buffers)."""
        self._cache.clear()

    # --- kernel --------------------------------------------------------------------------
    def kernel(self) -> torch.Tensor:
        w = self.weight
        if self.phase == "plain":
            return w
        if self.phase == "infer":
            return w * self.union(self.task).to(w.dtype)
        frozen = self.union(self.task - 1).to(w.dtype)
        if self.phase == "train":
            return w.detach() * frozen + w * (1 - frozen)
        own = self._cached(("own", self.task), lambda: self.mask(self.task)).to(w.dtype)
        return w.detach() * frozen + w * own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.kernel_size - 1) * self.dilation
        return F.conv1d(F.pad(x, (pad, 0)), self.kernel(), dilation=self.dilation)


def prune_free_weights(weight: torch.Tensor, frozen: torch.Tensor, prune_ratio: float) -> torch.Tensor:
    """m_k: among free weights (``~frozen``) keep the ``1 - prune_ratio`` share of largest magnitude.

    Keeps ``round((1 - prune_ratio) * n_free)`` weights; ties broken by position (stable sort)."""
    free = ~frozen.reshape(-1)
    n_keep = int(round((1.0 - prune_ratio) * int(free.sum())))
    magnitude = weight.detach().abs().reshape(-1).to(torch.float64)
    magnitude = torch.where(free, magnitude, torch.full_like(magnitude, -1.0))
    order = torch.sort(magnitude, descending=True, stable=True).indices[:n_keep]
    keep = torch.zeros_like(free)
    keep[order] = True
    return keep.reshape(weight.shape)


class FrozenEntryGuard:
    """Holds the frozen entries of each masked conv weight and writes them back after an
    optimizer step, so weight decay (AdamW decays every entry of a tensor that has a gradient)
    cannot move weights that belong to earlier tasks. Their gradient is already exactly zero
    (stopgrad), so optimizer moments at those entries stay at their fresh value (zero)."""

    def __init__(self, convs: list[MaskedCausalConv1d], frozen_upto: int):
        self._entries = []
        for conv in convs:
            frozen = conv.union(frozen_upto)
            if frozen.any():
                self._entries.append((conv.weight, frozen, conv.weight.detach()[frozen].clone()))

    def freeze_whole(self, tensors: list[torch.Tensor]) -> None:
        """Also hold every entry of ``tensors`` (parameters DDP already registers as trainable)."""
        for t in tensors:
            frozen = torch.ones_like(t, dtype=torch.bool)
            self._entries.append((t, frozen, t.detach()[frozen].clone()))

    def restore(self) -> None:
        with torch.no_grad():
            for weight, frozen, values in self._entries:
                weight[frozen] = values
