"""Embedding tables built from the feature schema, on the `meta` device until sharded."""

from __future__ import annotations

import torch
from torchrec.modules.embedding_configs import (
    EmbeddingBagConfig,
    EmbeddingConfig,
    PoolingType,
)
from torchrec.modules.embedding_modules import (
    EmbeddingBagCollection,
    EmbeddingCollection,
)

from distrec.data.schema import FeatureSchema

META = torch.device("meta")


def table_dims(schema: FeatureSchema, default_dim: int, overrides: dict) -> dict[str, int]:
    """Embedding width per table: ``sharding.tables.<name>.embedding_dim`` or the model default."""
    dims = {}
    for spec in schema.tables():
        override = overrides.get(spec.name)
        dims[spec.name] = (override.embedding_dim if override is not None else None) or default_dim
    return dims


def _table_fields(schema: FeatureSchema, dims: dict[str, int]) -> list[dict]:
    return [
        {"name": spec.name, "embedding_dim": dims[spec.name], "num_embeddings": spec.num_embeddings,
         "feature_names": list(spec.feature_names)}
        for spec in schema.tables()
    ]


def embedding_bag_configs(schema: FeatureSchema, dims: dict[str, int]) -> list[EmbeddingBagConfig]:
    """Sum-pooled tables: every sparse, multi-hot and sequence field pools to one vector."""
    return [EmbeddingBagConfig(**fields, pooling=PoolingType.SUM) for fields in _table_fields(schema, dims)]


def embedding_configs(schema: FeatureSchema, dims: dict[str, int]) -> list[EmbeddingConfig]:
    """Unpooled tables, for models that need one vector per position (sequence models)."""
    return [EmbeddingConfig(**fields) for fields in _table_fields(schema, dims)]


def build_embedding_bags(configs: list[EmbeddingBagConfig], device: torch.device = META):
    return EmbeddingBagCollection(tables=configs, device=device)


def build_embeddings(configs: list[EmbeddingConfig], device: torch.device = META):
    return EmbeddingCollection(tables=configs, device=device)
