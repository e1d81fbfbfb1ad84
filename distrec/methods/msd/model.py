"""The CTR model with the student inside (MKIM).

``MsdModel.sparse``: the TorchRec ID tables (sharded). ``MsdModel.dense`` (trained by DDP or the
DeepSpeed engine): the frozen student with LoRA on its attention projections, the adapters and
the CTR tower. Per row: the target item's semantic vector (frequency-adaptive cache or online),
the user's (when ``user_knowledge``) and the mean of the top-k history items by cosine to the
target (when ``item_fusion``) go through their adapter MLPs to the ID-embedding width and are
added to the item_id / user_id embeddings before the DCN-v2 / DeepFM tower.
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from distrec.data.batch import RecBatch
from distrec.methods.msd.item_cache import FrequencyAdaptiveCache
from distrec.methods.msd.student import StudentEncoder
from distrec.models.ctr import CtrDenseNet, CtrModel, click_loss_and_outputs

USER, ITEM, HISTORY = "user_id", "item_id", "hist_item_id"


def adapter(in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def single_ids(kjt: KeyedJaggedTensor, name: str) -> torch.Tensor:
    """One id per row (0 where the row has none, e.g. padding rows)."""
    jt = kjt[name]
    return jt.to_padded_dense(desired_length=1, padding_value=0)[:, 0]


def top_k_history(keys: torch.Tensor, target: torch.Tensor, history: torch.Tensor, k: int) -> torch.Tensor:
    """History ids [B, k] with the highest cosine (``keys``: unit vectors per id) to ``target``
    [B, d]; 0 where a row has fewer than k history items."""
    scores = (keys[history] * target.unsqueeze(1)).sum(-1)
    scores = scores.masked_fill(history == 0, float("-inf"))
    k = min(k, history.shape[1])
    top_scores, top = scores.topk(k, dim=1)
    chosen = history.gather(1, top)
    return chosen.masked_fill(torch.isinf(top_scores), 0)


class SemanticCtrNet(nn.Module):
    def __init__(self, student: StudentEncoder, items: FrequencyAdaptiveCache,
                 users: FrequencyAdaptiveCache | None, ctr: CtrDenseNet, feature_names: list[str],
                 embedding_dims: dict[str, int], sem_cfg) -> None:
        super().__init__()
        self.student = student
        self.items = items
        self.users = users
        self.ctr = ctr
        self.feature_names = feature_names
        self.top_k = sem_cfg.fusion_top_k
        self.item_fusion = sem_cfg.item_fusion and HISTORY in feature_names
        d, h = student.dim, sem_cfg.adapter_hidden
        self.item_adapter = adapter(d, h, embedding_dims[ITEM])
        self.history_adapter = adapter(d, h, embedding_dims[ITEM]) if self.item_fusion else None
        self.user_adapter = adapter(d, h, embedding_dims[USER]) if users is not None else None

    def semantic_offsets(self, sparse: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        """What the semantics add to each ID embedding."""
        self.items.maybe_refresh(self.student, self.training)
        item_ids = single_ids(sparse, ITEM)
        item_vec = self.items.lookup(self.student, item_ids)
        item_add = self.item_adapter(item_vec)
        if self.item_fusion:
            history = sparse[HISTORY].to_padded_dense(padding_value=0)
            if history.shape[1] == 0:
                history = item_ids.new_zeros(len(item_ids), 1)
            chosen = top_k_history(self.items.cache, item_vec.detach(), history, self.top_k)
            vectors = self.items.lookup(self.student, chosen)
            valid = (chosen > 0).unsqueeze(-1).to(vectors.dtype)
            fused = (vectors * valid).sum(1) / valid.sum(1).clamp(min=1)
            item_add = item_add + self.history_adapter(fused) * (valid.sum(1) > 0).to(fused.dtype)
        offsets = {ITEM: item_add * (item_ids > 0).unsqueeze(-1).to(item_add.dtype)}
        if self.users is not None:
            self.users.maybe_refresh(self.student, self.training)
            user_ids = single_ids(sparse, USER)
            offsets[USER] = self.user_adapter(self.users.lookup(self.student, user_ids)) * \
                (user_ids > 0).unsqueeze(-1).to(item_add.dtype)
        return offsets

    def forward(self, dense: torch.Tensor, embeddings: list[torch.Tensor], sparse: KeyedJaggedTensor) -> torch.Tensor:
        offsets = self.semantic_offsets(sparse)
        embeddings = [e + offsets[name] if name in offsets else e for name, e in zip(self.feature_names, embeddings)]
        return self.ctr(dense, embeddings)


def with_item_ids(result, batch: RecBatch):
    """A CTR forward's (loss, outputs) with each row's item id added (per-item-frequency metrics)."""
    loss, outputs = result
    outputs["items"] = single_ids(batch.sparse, ITEM)
    return loss, outputs


class ItemTaggedCtrModel(CtrModel):
    """The base CTR model (the report's "base"), whose outputs carry each row's item id."""

    def forward(self, batch: RecBatch):
        return with_item_ids(super().forward(batch), batch)


class MsdModel(CtrModel):
    """The CTR model whose dense net also reads the ids (for the student's semantic path)."""

    def forward(self, batch: RecBatch):
        pooled = self.sparse(batch.sparse).to_dict()
        logits = self.dense(batch.dense, [pooled[name] for name in self.feature_names], batch.sparse)
        return with_item_ids(click_loss_and_outputs(logits, batch), batch)
