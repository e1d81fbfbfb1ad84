"""SASRec (Kang & McAuley, ICDM'18) blocks with StackRec's zero-initialised residual scale.

Block: ``x = x + alpha_attn * CausalSelfAttention(LN(x))``, then
``x = x + alpha_ffn * FFN(LN(x))``; both alphas start at 0 (a new block is the identity).
Positions are learned (``position``, in the model's dense part); padded positions are zeroed at
the input and output of the stack (SASRec's timeline mask). Tensors are [batch, time, dim].
"""

from __future__ import annotations

import torch
from torch import nn


class SASRecBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.alpha_attn = nn.Parameter(torch.zeros(1))
        self.alpha_ffn = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, causal_mask: torch.Tensor) -> torch.Tensor:
        q = self.attn_norm(x)
        attended, _ = self.attn(q, q, q, attn_mask=causal_mask, need_weights=False)
        x = x + self.alpha_attn * attended
        return x + self.alpha_ffn * self.ffn(self.ffn_norm(x))


class SASRecBody(nn.Module):
    """``blocks`` causal self-attention blocks; ``forward(x, mask) -> hidden`` (mask [B, T]: real)."""

    def __init__(self, blocks: int, dim: int, heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError(f"SASRec needs blocks >= 1, got {blocks}")
        self.blocks = nn.ModuleList(SASRecBlock(dim, heads, dropout) for _ in range(blocks))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        t = x.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1)
        keep = None if mask is None else mask.unsqueeze(-1).to(x.dtype)
        if keep is not None:
            x = x * keep
        for block in self.blocks:
            x = block(x, causal)
        return x if keep is None else x * keep
