"""StackRec recipe, one training stage: a NextItNet/SASRec next-item model of ``model.blocks``
blocks on TorchRec-sharded item embeddings, trained with sampled softmax by the engine's loop
(``distrec.train.loop``) with early stopping on validation MRR@5.

Each stage (Ray Train via ``distrec run``/``distrec stackrec run``, or ``spawn``): set-up ->
restore (``run.init_from`` is how a stacked model arrives) -> train, evaluating on ``data.valid``
every ``trainer.eval_every`` steps (the same cadence for every variant; never at epoch ends, whose
step differs with the data size); the best weights go to ``<run_dir>/best``; the stage stops after
``trainer.early_stopping.patience`` evaluations without improvement or at ``trainer.max_steps`` ->
the best weights are scored on ``data.test`` -> ``<run_dir>/summary.json`` (the curve of validation
metrics against training time, time to best, test metrics) for the scenario driver and the report.

Clocks count training steps only (``train_s``); evaluation and checkpoint I/O are reported apart
(``eval_s``, ``checkpoint_s``), so a variant with more stages pays no extra for its evaluations.
"""

from __future__ import annotations

from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError
from distrec.metrics import RankingMetricAccumulator
from distrec.models.seqrec import SequenceDenseNet, SequenceRecModel
from distrec.sparse.tables import build_embeddings, embedding_configs, table_dims
from distrec.train.evaluation import evaluate_checkpoint
from distrec.train.loop import LOOP_STATE, train_loop  # noqa: F401  (LOOP_STATE: in the checkpoints)
from distrec.train.session import TrainSession

EARLY_STOP_METRIC = "mrr@5"


def sequence_field(cfg, schema: FeatureSchema):
    for s in schema.sequence:
        if s.name == cfg.model.sequence_field:
            if not s.owns_table:
                raise ConfigError(f"model.sequence_field '{s.name}' must own its item table in {schema.source}")
            return s
    raise ConfigError(
        f"model.sequence_field '{cfg.model.sequence_field}' is not a sequence field of {schema.source} "
        f"(sequence fields: {[s.name for s in schema.sequence]})"
    )


def build_model(cfg, schema: FeatureSchema) -> SequenceRecModel:
    """The model with its item table on the meta device (materialised only when sharded)."""
    field = sequence_field(cfg, schema)
    if schema.sparse or len(schema.sequence) != 1:
        raise ConfigError(f"stackrec reads one sequence field and nothing else; {schema.source} has "
                          f"sparse {[f.name for f in schema.sparse]}, sequence {schema.sparse_names}")
    dims = table_dims(schema, cfg.model.embedding_dim, cfg.sharding.tables)
    if dims[field.name] != cfg.model.embedding_dim:
        raise ConfigError("stackrec: the item table's embedding_dim must equal model.embedding_dim")
    sparse = build_embeddings(embedding_configs(schema, dims))
    dense = SequenceDenseNet(cfg.model, field.num_embeddings, field.max_len)
    return SequenceRecModel(sparse, dense, field.name, field.max_len)


def evaluate(session: TrainSession, feed, cfg, schema=None) -> dict:
    accumulator = RankingMetricAccumulator(list(cfg.metrics.ks))
    session.evaluate(feed, lambda out: accumulator.update(out["scores"], out["targets"], weights=out["weights"]))
    return accumulator.compute()


def train_worker(cfg, in_ray: bool = False) -> dict:
    if not cfg.data.valid or not cfg.data.test:
        raise ConfigError("stackrec needs data.valid (early stopping) and data.test (final metrics)")
    if cfg.trainer.early_stopping.metric != EARLY_STOP_METRIC or cfg.trainer.eval_at_epoch_end:
        raise ConfigError(f"stackrec compares variants by validation {EARLY_STOP_METRIC} at a fixed step cadence: "
                          f"set trainer.early_stopping.metric={EARLY_STOP_METRIC} and trainer.eval_at_epoch_end=false "
                          "(configs/stackrec/base.yaml does)")
    meta = {"blocks": cfg.model.blocks}
    # negatives differ per rank; the weights come from rank 0
    return train_loop(cfg, in_ray, build_model, evaluate, seed_per_rank=True, checkpoint_meta=meta,
                      summary_extra={**meta, "arch": cfg.model.arch})


def eval_worker(cfg, in_ray: bool = False) -> dict:
    """Ranking metrics of a checkpoint of ``model.blocks`` blocks (a stacked stage's: set its depth)."""
    return evaluate_checkpoint(cfg, in_ray, build_model, evaluate)
