"""Next-item sequential recommender over TorchRec item embeddings (NextItNet or SASRec body).

``sparse``: an EmbeddingCollection (unpooled, one vector per position) holding the item table,
sharded by TorchRec like any table. ``dense``: the block stack, SASRec's positions and the
untied sampled-softmax output layer (everything DDP/DeepSpeed trains).

Each batch row is one sequence (the schema's sequence field, its last ``max_len`` items), laid
out left-padded in a [B, max_len] grid (id 0 = padding, embedding zeros). Training: inputs =
seq[:-1], targets = seq[1:], sampled-softmax loss at every position with a real input and
target. Evaluation (``model.eval()``): full-softmax scores of the last position against the
sequence's last item.
"""

from __future__ import annotations

import torch
from torch import nn

from distrec.data.batch import RecBatch
from distrec.models.nextitnet import NextItNetBody
from distrec.models.sampled_softmax import PADDING_ID, SampledSoftmaxHead
from distrec.models.sasrec import SASRecBody


def left_padded(values: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Jagged rows (``values`` [sum(lengths), ...]) as a [B, width, ...] grid, each row ending at
    the last column, zeros before it. Rows longer than ``width`` keep their last ``width``."""
    lengths = lengths.to(torch.int64)
    rows = torch.repeat_interleave(torch.arange(len(lengths), device=values.device), lengths)
    offsets = torch.cumsum(lengths, 0) - lengths
    pos_from_end = torch.repeat_interleave(offsets + lengths, lengths) - 1 - torch.arange(
        len(values), device=values.device)
    keep = pos_from_end < width
    out = values.new_zeros((len(lengths), width, *values.shape[1:]))
    out[rows[keep], width - 1 - pos_from_end[keep]] = values[keep]
    return out


class SequenceDenseNet(nn.Module):
    def __init__(self, cfg, num_items: int, max_len: int) -> None:
        super().__init__()
        dim = cfg.embedding_dim
        self.arch = str(cfg.arch)  # nextitnet | sasrec, checked when the config loads
        if cfg.arch == "nextitnet":
            self.body = NextItNetBody(cfg.blocks, dim, cfg.kernel_size, list(cfg.dilations))
            self.position = None
            self.output_norm = None
        else:
            self.body = SASRecBody(cfg.blocks, dim, cfg.heads, cfg.dropout)
            self.position = nn.Embedding(max_len, dim)
            self.output_norm = nn.LayerNorm(dim)
        self.head = SampledSoftmaxHead(dim, num_items, cfg.sample_fraction, cfg.remove_accidental_hits)

    def hidden(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, T, dim] block-stack output for left-padded inputs (mask: real positions)."""
        x = embeddings
        if self.position is not None:
            x = (x + self.position.weight[-x.shape[1]:]) * mask.unsqueeze(-1).to(x.dtype)
        return self.body(x, mask)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden if self.output_norm is None else self.output_norm(hidden)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, embeddings: torch.Tensor,
                weights: torch.Tensor, max_len: int):
        """Loss and outputs from one feature's jagged ids and embeddings (see the module doc)."""
        ids = left_padded(ids, lengths, max_len)
        emb = left_padded(embeddings, lengths, max_len)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        real = (inputs != PADDING_ID) & (targets != PADDING_ID) & (weights[:, None] > 0)
        hidden = self.project(self.hidden(emb[:, :-1], inputs != PADDING_ID))
        if self.training:
            loss = self.head.loss(hidden[real], targets[real])
            return loss, {"loss": loss.detach(), "weights": weights}
        row_weights = weights * real[:, -1].to(weights.dtype)
        loss = hidden.new_zeros(())  # evaluation ranks the full catalogue: no sampled loss
        return loss, {
            "loss": loss,
            "scores": self.head.scores(hidden[:, -1]).detach(),
            "targets": targets[:, -1],
            "weights": row_weights,
        }


class SequenceRecModel(nn.Module):
    """``forward(batch) -> (loss, outputs)``; outputs hold detached tensors (scores when eval).

    Everything after the embedding lookup runs inside ``dense.forward``: TorchRec's pipeline
    traces this forward with torch.fx and treats ``dense`` as one opaque (leaf) module.
    """

    def __init__(self, sparse: nn.Module, dense: SequenceDenseNet, feature: str, max_len: int) -> None:
        super().__init__()
        self.sparse = sparse
        self.dense = dense
        self.feature = feature
        self.max_len = max_len

    def forward(self, batch: RecBatch):
        ids = batch.sparse[self.feature]
        embeddings = self.sparse(batch.sparse)[self.feature]
        return self.dense(ids.values(), ids.lengths(), embeddings.values(), batch.weights, self.max_len)
