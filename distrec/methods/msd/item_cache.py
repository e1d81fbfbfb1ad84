"""Frequency-adaptive semantic vectors for one entity table (items or users).

Entities seen at least ``min_freq`` times in the training data read a cached vector; the cache is
rebuilt from the current student (LoRA included) every ``refresh_every`` training steps and
before evaluation after training. Rarer entities are encoded online, with gradients into LoRA.
A refresh splits the table over the ranks (each encodes its slice, then all-gather), so every
rank must call ``lookup`` the same number of times — which the engine guarantees (equal batch
counts per rank). Id 0 (missing) has the zero vector.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn


class FrequencyAdaptiveCache(nn.Module):
    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frequency: torch.Tensor,
                 min_freq: int, refresh_every: int, encode_batch_size: int) -> None:
        super().__init__()
        # non-persistent buffers: rebuilt from the entity files, never checkpointed
        self.register_buffer("input_ids", input_ids, persistent=False)
        self.register_buffer("attention_mask", attention_mask, persistent=False)
        cached = frequency >= min_freq
        cached[0] = True  # id 0 reads the (zero) cache row, never the encoder
        self.register_buffer("is_cached", cached, persistent=False)
        self.register_buffer("cache", torch.zeros(0), persistent=False)
        self.refresh_every = max(1, refresh_every)
        self.encode_batch_size = encode_batch_size
        self.train_steps = 0
        self.refreshes = 0
        self.stale = True

    @property
    def num_entities(self) -> int:
        return int(self.input_ids.shape[0])

    def cached_share(self, ids: torch.Tensor) -> float:
        ids = ids[ids > 0]
        return float(self.is_cached[ids].float().mean()) if ids.numel() else 1.0

    @torch.no_grad()
    def refresh(self, student: nn.Module) -> None:
        """Re-encode every entity with the current student (this rank's slice, then all-gather)."""
        world = dist.get_world_size() if dist.is_initialized() else 1
        rank = dist.get_rank() if dist.is_initialized() else 0
        n = self.num_entities
        per_rank = math.ceil(n / world)
        lo, hi = min(rank * per_rank, n), min((rank + 1) * per_rank, n)
        parts = [student(self.input_ids[i:min(i + self.encode_batch_size, hi)],
                         self.attention_mask[i:min(i + self.encode_batch_size, hi)])
                 for i in range(lo, hi, self.encode_batch_size)]
        dim = student.dim
        mine = torch.cat(parts) if parts else torch.zeros(0, dim, device=self.input_ids.device)
        mine = torch.cat([mine, mine.new_zeros(per_rank - mine.shape[0], dim)])
        if world > 1:
            gathered = [torch.empty_like(mine) for _ in range(world)]
            dist.all_gather(gathered, mine.contiguous())
            mine = torch.cat(gathered)
        cache = mine[:n].clone()
        cache[0] = 0
        self.cache = cache
        self.stale = False
        self.refreshes += 1

    def maybe_refresh(self, student: nn.Module, training: bool) -> None:
        """Training: refresh on the first step and every ``refresh_every`` steps after it.
        Evaluation: refresh once if the student has trained since the last refresh."""
        if training:
            if self.cache.numel() == 0 or self.train_steps % self.refresh_every == 0:
                self.refresh(student)
            self.train_steps += 1
            self.stale = True  # the student changes in this step: evaluation must refresh first
        elif self.stale:
            self.refresh(student)

    def online(self, student: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        """Encode ``ids`` with the student now (gradients flow into LoRA)."""
        return student(self.input_ids[ids], self.attention_mask[ids])

    def lookup(self, student: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        """Vectors of ``ids`` (any shape): cached rows for frequent ids, online encoding for the
        rest; each distinct rare id is encoded once per call."""
        flat = ids.reshape(-1)
        unique, inverse = torch.unique(flat, return_inverse=True)
        vectors = self.cache[unique]
        rare = ~self.is_cached[unique]
        if bool(rare.any()):
            vectors = vectors.clone()
            vectors[rare] = self.online(student, unique[rare]).to(vectors.dtype)
        elif self.training and torch.is_grad_enabled():
            # Without a rare id the student (LoRA) would drop out of this step's graph on this
            # rank only; DeepSpeed/DDP reduce gradients per parameter and need every rank to
            # produce the same ones: encode id 0 and add it times zero (zero gradients).
            vectors = vectors + 0.0 * self.online(student, unique[:1] * 0).sum()
        return vectors[inverse].reshape(*ids.shape, -1)
