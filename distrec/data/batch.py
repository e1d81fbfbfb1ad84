"""The batch every distrec model consumes; movable as a unit by TorchRec's train pipelines."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable


@dataclass
class RecBatch(Pipelineable):
    """One batch of rows.

    dense:     [B, n_dense] float32 (n_dense may be 0)
    sparse:    KeyedJaggedTensor keyed by FeatureSchema.sparse_names
    labels:    [B, n_labels] float32, columns in FeatureSchema.labels order
    weights:   [B] float32; 0 marks padding rows that keep ranks in step at the end of an epoch
    group_ids: [B] int64 values of FeatureSchema.group_key (zeros when the schema has none)
    """

    dense: torch.Tensor
    sparse: KeyedJaggedTensor
    labels: torch.Tensor
    weights: torch.Tensor
    group_ids: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_real_rows(self) -> int:
        return int((self.weights > 0).sum())

    def to(self, device: torch.device, non_blocking: bool = False) -> "RecBatch":
        return RecBatch(
            dense=self.dense.to(device=device, non_blocking=non_blocking),
            sparse=self.sparse.to(device=device, non_blocking=non_blocking),
            labels=self.labels.to(device=device, non_blocking=non_blocking),
            weights=self.weights.to(device=device, non_blocking=non_blocking),
            group_ids=self.group_ids.to(device=device, non_blocking=non_blocking),
        )

    def record_stream(self, stream: torch.Stream) -> None:
        self.dense.record_stream(stream)
        self.sparse.record_stream(stream)
        self.labels.record_stream(stream)
        self.weights.record_stream(stream)
        self.group_ids.record_stream(stream)

    def pin_memory(self) -> "RecBatch":
        return RecBatch(
            dense=self.dense.pin_memory(),
            sparse=self.sparse.pin_memory(),
            labels=self.labels.pin_memory(),
            weights=self.weights.pin_memory(),
            group_ids=self.group_ids.pin_memory(),
        )


def pad_rows(batch: RecBatch, size: int) -> RecBatch:
    """``batch`` grown to ``size`` rows with weight-0 padding rows (empty bags, zero features).

    TorchRec's sharded lookups expect the same batch size on every rank at every step, so the
    partial batches at the end of an epoch are padded instead of being sent short.
    """
    pad = size - batch.batch_size
    if pad <= 0:
        return batch
    keys = batch.sparse.keys()
    lengths = batch.sparse.lengths().view(len(keys), batch.batch_size)
    lengths = torch.cat([lengths, lengths.new_zeros(len(keys), pad)], dim=1).reshape(-1)
    sparse = KeyedJaggedTensor(keys=keys, values=batch.sparse.values(), lengths=lengths,
                               weights=batch.sparse.weights_or_none())

    def grow(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t.new_zeros((pad, *t.shape[1:]))])

    return RecBatch(grow(batch.dense), sparse, grow(batch.labels), grow(batch.weights), grow(batch.group_ids))
