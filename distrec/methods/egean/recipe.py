"""EGEAN recipe: CVR over the entire exposure space, and its baselines, on sharded embeddings.

``model.variant`` picks EGEAN, ESMM, ESCM²-IPS, ESCM²-DR or a naive clicks-only CVR model (see
``distrec/methods/egean/config.py``). Runs in every training worker, like the CTR recipe: set-up →
restore → for each epoch: train, evaluate entire-space metrics on the validation split,
checkpoint, report. With ``method.ground_truth`` set, absent data is generated first.
"""

from __future__ import annotations

from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError
from distrec.methods.egean.metrics import EntireSpaceMetrics
from distrec.methods.egean.model import EgeanDenseNet, EgeanModel
from distrec.methods.egean.objective import EntireSpaceObjective, LabelColumns
from distrec.sparse.tables import build_embedding_bags, embedding_bag_configs
from distrec.train.evaluation import evaluate_checkpoint
from distrec.train.loop import train_loop
from distrec.train.session import TrainSession


def label_index(schema: FeatureSchema, name: str, key: str) -> int:
    if name not in schema.labels:
        raise ConfigError(
            f"{key}={name!r} is not a label of the feature schema {schema.source} "
            f"(labels: {list(schema.labels)})"
        )
    return schema.labels.index(name)


def shuffle_groups(cfg, schema: FeatureSchema) -> list[list[int]]:
    """Field-index groups permuted to make exposure negatives (``method.exposure_shuffle_fields``)."""
    names = list(schema.sparse_names) + (["dense"] if schema.dense else [])
    chosen = list(cfg.method.exposure_shuffle_fields)
    if not chosen:
        return [[i] for i in range(len(names))]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise ConfigError(f"method.exposure_shuffle_fields: {unknown} not among the fields {names}")
    return [[names.index(n) for n in chosen]]


def build_model(cfg, schema: FeatureSchema) -> EgeanModel:
    """The chosen variant with its shared tables on the meta device (materialised when sharded)."""
    if any(t.embedding_dim not in (None, cfg.model.embedding_dim) for t in cfg.sharding.tables.values()):
        raise ConfigError("sharding.tables.*.embedding_dim: EGEAN stacks fields, every table needs "
                          f"model.embedding_dim={cfg.model.embedding_dim}")
    dim = cfg.model.embedding_dim
    sparse = build_embedding_bags(embedding_bag_configs(schema, {t.name: dim for t in schema.tables()}))
    labels = LabelColumns(
        click=label_index(schema, cfg.method.click_label, "method.click_label"),
        conversion=label_index(schema, cfg.method.conversion_label, "method.conversion_label"),
    )
    dense = EgeanDenseNet(len(schema.sparse_names), len(schema.dense), dim, cfg.model, cfg.method,
                          shuffle_groups(cfg, schema))
    objective = EntireSpaceObjective(cfg.model.variant, labels, cfg.method)
    return EgeanModel(sparse, dense, list(schema.sparse_names), objective)


def entire_space_metrics(cfg, schema: FeatureSchema) -> EntireSpaceMetrics:
    m = cfg.method
    return EntireSpaceMetrics(
        click=label_index(schema, m.click_label, "method.click_label"),
        conversion=label_index(schema, m.conversion_label, "method.conversion_label"),
        true_cvr=schema.labels.index(m.true_cvr_label) if m.true_cvr_label in schema.labels else None,
        cvr_draw=schema.labels.index(m.cvr_draw_label) if m.cvr_draw_label in schema.labels else None,
    )


def evaluate(session: TrainSession, feed, cfg, schema: FeatureSchema) -> dict:
    metrics = entire_space_metrics(cfg, schema)
    session.evaluate(feed, metrics.update)
    return metrics.compute(cfg.metrics.names)


def train_worker(cfg, in_ray: bool = False) -> dict:
    """The CTR recipe's loop (train, evaluate, checkpoint per epoch) with this model and metrics."""
    return train_loop(cfg, in_ray, build_model, evaluate)["final"]


def eval_worker(cfg, in_ray: bool = False) -> dict:
    return evaluate_checkpoint(cfg, in_ray, build_model, evaluate)
