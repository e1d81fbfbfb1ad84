"""Baseline CTR models: DCN-v2, DeepFM and DLRM over TorchRec embedding bags.

The model is split in two parts so the engine can train them differently: ``sparse`` (the
EmbeddingBagCollection, sharded by TorchRec with a fused optimizer) and ``dense`` (every other
parameter, trained with DDP or a DeepSpeed engine).
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.models.dlrm import InteractionArch
from torchrec.modules.crossnet import CrossNet, LowRankCrossNet
from torchrec.modules.deepfm import FactorizationMachine
from torchrec.modules.mlp import MLP

from distrec.data.batch import RecBatch
from distrec.errors import ConfigError
from distrec.sparse.tables import (
    build_embedding_bags,
    embedding_bag_configs,
    table_dims,
)


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean BCE over real rows; padding rows (weight 0) add nothing."""
    per_row = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (per_row * weights).sum() / weights.sum().clamp(min=1.0)


class CtrDenseNet(nn.Module):
    """Everything after the embedding lookup: dense-feature MLP, feature interaction, top MLP."""

    def __init__(self, arch: str, num_dense: int, feature_dims: list[int], cfg) -> None:
        super().__init__()
        self.arch = str(arch)  # dcn | deepfm | dlrm, checked when the config loads
        self.num_sparse = len(feature_dims)
        if arch in ("deepfm", "dlrm") and len(set(feature_dims)) > 1:
            raise ConfigError(
                f"model.arch={arch} needs one embedding_dim for every table, got {sorted(set(feature_dims))}"
            )
        dim = feature_dims[0]
        bottom = list(cfg.dense_arch)
        if arch == "dlrm":
            bottom = bottom[:-1] + [dim]  # the dot interaction needs dense output of width dim
        self.bottom = MLP(num_dense, bottom) if num_dense else None
        dense_out = bottom[-1] if num_dense else 0
        if arch == "dcn":
            width = dense_out + sum(feature_dims)
            cross = (
                LowRankCrossNet(width, cfg.cross_layers, cfg.cross_low_rank)
                if cfg.cross_low_rank
                else CrossNet(width, cfg.cross_layers)
            )
            self.interaction = cross
            top_in = width
        elif arch == "deepfm":
            self.interaction = FactorizationMachine()
            top_in = dense_out + sum(feature_dims)
            self.fm_scale = nn.Parameter(torch.ones(1))
        else:
            if not num_dense:
                raise ConfigError("model.arch=dlrm needs at least one dense field in the schema")
            self.interaction = InteractionArch(num_sparse_features=self.num_sparse)
            top_in = dim + self.num_sparse + self.num_sparse * (self.num_sparse - 1) // 2
        self.top = MLP(top_in, list(cfg.over_arch))
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity()
        self.head = nn.Linear(cfg.over_arch[-1] if cfg.over_arch else top_in, 1)

    def forward(self, dense: torch.Tensor, embeddings: list[torch.Tensor]) -> torch.Tensor:
        dense_out = self.bottom(dense) if self.bottom is not None else dense[:, :0]
        if self.arch == "dcn":
            x = self.interaction(torch.cat([dense_out, *embeddings], dim=1))
            return self.head(self.dropout(self.top(x))).squeeze(-1)
        if self.arch == "deepfm":
            fm = self.interaction([torch.stack(embeddings, dim=1)])
            deep = self.head(self.dropout(self.top(torch.cat([dense_out, *embeddings], dim=1))))
            return (deep + self.fm_scale * fm).squeeze(-1)
        x = self.interaction(dense_out, torch.stack(embeddings, dim=1))
        return self.head(self.dropout(self.top(x))).squeeze(-1)


class CtrModel(nn.Module):
    """``forward(batch) -> (loss, outputs)``, the contract of TorchRec's train pipelines."""

    def __init__(self, sparse: nn.Module, dense: CtrDenseNet, feature_names: list[str]) -> None:
        super().__init__()
        self.sparse = sparse
        self.dense = dense
        self.feature_names = feature_names

    def forward(self, batch: RecBatch):
        pooled = self.sparse(batch.sparse).to_dict()
        logits = self.dense(batch.dense, [pooled[name] for name in self.feature_names])
        return click_loss_and_outputs(logits, batch)


def click_loss_and_outputs(logits: torch.Tensor, batch: RecBatch):
    """(weighted BCE on the first label, detached outputs for metrics) of a CTR forward."""
    labels = batch.labels[:, 0]
    loss = weighted_bce(logits, labels, batch.weights)
    outputs = {
        "loss": loss.detach(),
        "preds": torch.sigmoid(logits.detach()),
        "labels": labels,
        "weights": batch.weights,
        "groups": batch.group_ids,
    }
    return loss, outputs


def build_ctr_model(cfg, schema) -> CtrModel:
    """The CTR model with its tables on the meta device (materialised only when sharded)."""
    dims = table_dims(schema, cfg.model.embedding_dim, cfg.sharding.tables)
    sparse = build_embedding_bags(embedding_bag_configs(schema, dims))
    table_of = {name: spec.name for spec in schema.tables() for name in spec.feature_names}
    feature_dims = [dims[table_of[name]] for name in schema.sparse_names]
    dense = CtrDenseNet(cfg.model.arch, len(schema.dense), feature_dims, cfg.model)
    return CtrModel(sparse, dense, schema.sparse_names)
