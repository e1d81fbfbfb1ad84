"""MSD recipe: CTR training with the distilled student inside (LoRA + adapters + item cache +
top-k history fusion), on TorchRec-sharded ID tables. The loop is the CTR recipe's; only the
model differs. With ``method.semantics.enabled=false`` it is the base CTR model.

Order of work: ``distrec msd knowledge`` → ``distrec msd distill`` → ``distrec run`` (this).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError
from distrec.methods.msd.entities import id_frequencies, load_catalog
from distrec.methods.msd.item_cache import FrequencyAdaptiveCache
from distrec.methods.msd.model import (
    ITEM,
    USER,
    ItemTaggedCtrModel,
    MsdModel,
    SemanticCtrNet,
)
from distrec.methods.msd.student import StudentEncoder, load_tokenizer, tokenize
from distrec.methods.msd.variants import with_variant
from distrec.metrics import CtrMetricAccumulator
from distrec.models.ctr import build_ctr_model
from distrec.sparse.tables import table_dims
from distrec.train.evaluation import evaluate_checkpoint
from distrec.train.loop import train_loop

RARE = "rare_items"  # prefix of the metrics over rows whose item is rare in training


def student_checkpoint(cfg) -> str:
    path = cfg.method.semantics.student or cfg.method.distill.output
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ConfigError(f"no student checkpoint at {path} (method.semantics.student or "
                          f"method.distill.output): run `distrec msd distill CONFIG` first")
    return path


def _check(cfg, schema: FeatureSchema) -> None:
    names = schema.sparse_names
    for name in (USER, ITEM):
        if name not in names:
            raise ConfigError(f"{schema.source}: MSD needs a sparse field '{name}' (ids of "
                              f"users.parquet / items.parquet)")
        if schema.field(name).hash:
            raise ConfigError(f"{schema.source}: field '{name}' is hashed; MSD needs the importer's ids")


def _cache(tokenizer, texts: list[str], frequency: np.ndarray, cfg) -> FrequencyAdaptiveCache:
    sem = cfg.method.semantics
    ids, mask = tokenize(tokenizer, texts, cfg.method.student.max_length)
    return FrequencyAdaptiveCache(ids, mask, torch.as_tensor(frequency, dtype=torch.long),
                                  sem.cache_min_freq, sem.cache_refresh_every, sem.encode_batch_size)


def _texts(entities: dict, size: int) -> list[str]:
    return [entities[i].raw if i in entities else "" for i in range(size)]


def build_model(cfg, schema: FeatureSchema):
    _check(cfg, schema)
    base = build_ctr_model(cfg, schema)
    sem = cfg.method.semantics
    if not sem.enabled:
        return ItemTaggedCtrModel(base.sparse, base.dense, base.feature_names)
    student = StudentEncoder(student_checkpoint(cfg))
    tokenizer = load_tokenizer(student.path)
    if sem.lora:
        student.add_lora(sem.lora_rank, sem.lora_alpha, list(sem.lora_targets) if sem.lora_targets else None)
    else:
        student.freeze()
    catalog = load_catalog(cfg.method.entities, cfg.data.train)
    n_items, n_users = schema.field(ITEM).num_embeddings, schema.field(USER).num_embeddings
    items = _cache(tokenizer, _texts(catalog.items, n_items), id_frequencies(cfg.data.train, ITEM, n_items), cfg)
    users = None
    if sem.user_knowledge:
        users = _cache(tokenizer, _texts(catalog.users, n_users),
                       id_frequencies(cfg.data.train, USER, n_users), cfg)
    dims = table_dims(schema, cfg.model.embedding_dim, cfg.sharding.tables)
    feature_dims = {name: dims[schema.table_of(name)] for name in schema.sparse_names}
    dense = SemanticCtrNet(student, items, users, base.dense, base.feature_names, feature_dims, sem)
    return MsdModel(base.sparse, dense, base.feature_names)


def rare_items(cfg, schema: FeatureSchema) -> torch.Tensor:
    """Per item id: seen fewer than ``semantics.cache_min_freq`` times in training (the items the
    student encodes online). Reads data.train's item column: once per worker, not per evaluation."""
    n_items = schema.field(ITEM).num_embeddings
    return torch.as_tensor(id_frequencies(cfg.data.train, ITEM, n_items) < cfg.method.semantics.cache_min_freq)


def evaluate(session, feed, cfg, schema: FeatureSchema, *, rare: torch.Tensor) -> dict:
    """The CTR metrics, plus AUC / LogLoss over the rows whose item is ``rare`` (see
    ``rare_items``), where semantics should matter most. The same rows for the base model and
    every MSD variant."""
    every, rare_rows = CtrMetricAccumulator(), CtrMetricAccumulator()

    def update(out: dict) -> None:
        every.update(out["preds"], out["labels"], out["weights"], out["groups"])
        rare_rows.update(out["preds"], out["labels"], out["weights"] * rare[out["items"].cpu()].to(out["weights"]))

    session.evaluate(feed, update)
    metrics = every.compute(names=tuple(cfg.metrics.names))
    metrics.update({f"{RARE}_{k}": v for k, v in rare_rows.compute(names=("auc", "logloss")).items()})
    return metrics


def train_worker(cfg, in_ray: bool = False) -> dict:
    cfg = with_variant(cfg)  # method.report.variant: one of the report's variants (variants.py)
    rare = rare_items(cfg, FeatureSchema.load(cfg.data.schema, cfg.data.s3_endpoint_url))
    return train_loop(cfg, in_ray, build_model, functools.partial(evaluate, rare=rare))["final"]


def eval_worker(cfg, in_ray: bool = False) -> dict:
    cfg = with_variant(cfg)
    rare = rare_items(cfg, FeatureSchema.load(cfg.data.schema, cfg.data.s3_endpoint_url))
    return evaluate_checkpoint(cfg, in_ray, build_model, functools.partial(evaluate, rare=rare))

