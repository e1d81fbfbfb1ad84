"""The Conure model: item embeddings in a TorchRec EmbeddingCollection (``.sparse``), the masked
backbone and one head per task (``.dense``), and the forward of the active task.

Input rows carry one item sequence (``item_field``, oldest first, no padding ids). Sequences are
right-aligned into ``max_len`` positions with zero vectors in front (causal convs see only the
past). next_item reads positions 0..L-2 and predicts the item one step ahead at each; item_rec
and profile append the task's separator vector and read the hidden state there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distrec.data.batch import RecBatch
from distrec.methods.conure.backbone import ConureBackbone
from distrec.methods.conure.heads import build_head


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # next_item | item_rec | profile
    num_outputs: int


class ConureDense(nn.Module):
    """Every parameter outside the embedding tables (the backbone and the task heads) and the
    forward of the active task. TorchRec's pipeline fx-traces only the top-level forward and
    treats this module as a leaf, so the task logic lives here."""

    def __init__(self, model_cfg, method_cfg, tasks: list[TaskSpec], max_len: int):
        super().__init__()
        # only Conure itself keeps masks: the baselines' checkpoints carry no mask buffers
        mask_slots = len(tasks) if method_cfg.strategy == "conure" else 0
        self.backbone = ConureBackbone(model_cfg, mask_slots)
        self.heads = nn.ModuleDict(
            {t.name: build_head(t.kind, model_cfg.channels, t.num_outputs, method_cfg) for t in tasks}
        )
        self.tasks = list(tasks)
        self.max_len = max_len
        self.active = 1  # 1-based index into tasks
        self.freeze_embeddings = False

    @property
    def task(self) -> TaskSpec:
        return self.tasks[self.active - 1]

    def set_mode(self, task: int, phase: str) -> None:
        self.active = task
        self.backbone.set_mode(task, phase)

    def padded(self, values: torch.Tensor, lengths: torch.Tensor, ids_flat: torch.Tensor):
        """(ids [B, L], embeddings [B, L, C]) right-aligned in max_len positions; id 0 is empty."""
        lengths = lengths.to(torch.int64)
        b, length = lengths.numel(), self.max_len
        row = torch.repeat_interleave(torch.arange(b, device=values.device), lengths)
        start = torch.cumsum(lengths, 0) - lengths
        position = torch.arange(values.shape[0], device=values.device) - start[row] + (length - lengths[row])
        emb = values.new_zeros(b, length, values.shape[1]).index_put((row, position), values)
        ids = torch.zeros(b, length, dtype=torch.int64, device=values.device)
        ids[row, position] = ids_flat.to(torch.int64)
        return ids, emb

    def forward(self, values, lengths, ids_flat, labels, weights):
        if self.freeze_embeddings:
            values = values.detach()
        ids, emb = self.padded(values, lengths, ids_flat)
        task = self.task
        head = self.heads[task.name]
        outputs = {"weights": weights.detach()}
        if task.kind == "next_item":
            hidden = self.backbone(emb[:, :-1])
            targets = ids[:, 1:]
            valid = (ids[:, :-1] != 0) & (targets != 0) & (weights[:, None] > 0)
            loss = head.loss(hidden, targets, valid)
            last = hidden[:, -1]
            targets = targets[:, -1]
        else:
            sep = head.separator.expand(emb.shape[0], 1, emb.shape[2])
            last = self.backbone(torch.cat([emb, sep], dim=1))[:, -1]
            targets = labels[:, 0].to(torch.int64)
            loss = head.loss(last, targets, weights)
        if not self.training:
            outputs["scores"] = head.scores(last.detach())
            outputs["targets"] = targets
        outputs["loss"] = loss.detach()
        return loss, outputs


class ConureModel(nn.Module):
    """``forward(batch) -> (loss, outputs)``: the embedding lookup, then ``dense``."""

    def __init__(self, sparse: nn.Module, dense: ConureDense, item_field: str):
        super().__init__()
        self.sparse = sparse
        self.dense = dense
        self.item_field = item_field

    def forward(self, batch: RecBatch):
        embedded = self.sparse(batch.sparse)[self.item_field]
        ids = batch.sparse[self.item_field]
        return self.dense(embedded.values(), embedded.lengths(), ids.values(), batch.labels, batch.weights)
