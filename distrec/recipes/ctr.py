"""CTR recipe: DCN-v2 / DeepFM / DLRM on TorchRec-sharded embedding tables.

Runs in every training worker (a Ray Train worker, or a local process in tests):
set-up → restore → for each epoch: train, evaluate on the validation split, checkpoint, report.
"""

from __future__ import annotations

from distrec.config.load import run_dir
from distrec.data.schema import FeatureSchema
from distrec.metrics import CtrMetricAccumulator
from distrec.models.ctr import CtrDenseNet, CtrModel
from distrec.sparse.tables import build_embedding_bags, embedding_bag_configs, table_dims
from distrec.train.data_feed import DataFeed
from distrec.train.distributed import seed_everything, worker_info
from distrec.train.progress import ProgressMeter, configure_logging
from distrec.train.session import TrainSession


def build_model(cfg, schema: FeatureSchema) -> CtrModel:
    """The CTR model with its tables on the meta device (materialised only when sharded)."""
    dims = table_dims(schema, cfg.model.embedding_dim, cfg.sharding.tables)
    sparse = build_embedding_bags(embedding_bag_configs(schema, dims))
    table_of = {name: spec.name for spec in schema.tables() for name in spec.feature_names}
    feature_dims = [dims[table_of[name]] for name in schema.sparse_names]
    dense = CtrDenseNet(cfg.model.arch, len(schema.dense), feature_dims, cfg.model)
    return CtrModel(sparse, dense, schema.sparse_names)


def evaluate(session: TrainSession, feed: DataFeed, names) -> dict:
    accumulator = CtrMetricAccumulator()
    session.evaluate(feed, lambda out: accumulator.update(out["preds"], out["labels"], out["weights"], out["groups"]))
    return accumulator.compute(names=tuple(names))


def open_feed(cfg, schema, worker, path: str, train: bool) -> DataFeed:
    return DataFeed.open(
        path, schema,
        batch_size=cfg.data.batch_size if train else cfg.data.eval_batch_size,
        rank=worker.rank, world_size=worker.world_size, seed=cfg.run.seed,
        shuffle=cfg.data.shuffle and train, loader_workers=cfg.data.loader_workers,
        s3_endpoint_url=cfg.data.s3_endpoint_url,
    )


def evaluate_ctr(session: TrainSession, feed: DataFeed, cfg, schema) -> dict:
    return evaluate(session, feed, cfg.metrics.names)


def train_worker(cfg, in_ray: bool = False, build=None, evaluate_fn=None) -> dict:
    """Recipes whose model keeps the CTR contract reuse this loop with their own
    ``build(cfg, schema) -> model`` and ``evaluate_fn(session, feed, cfg, schema) -> metrics``."""
    configure_logging()
    worker = worker_info(cfg.trainer.use_gpu, cfg.trainer.cpus_per_worker)
    seed_everything(cfg.run.seed)
    schema = FeatureSchema.load(cfg.data.schema)
    session = TrainSession(cfg, (build or build_model)(cfg, schema), worker, run_dir(cfg), in_ray)
    session.restore()

    train = open_feed(cfg, schema, worker, cfg.data.train, train=True)
    valid = open_feed(cfg, schema, worker, cfg.data.valid, train=False) if cfg.data.valid else None
    total_steps = sum(train.steps(e) for e in range(cfg.trainer.epochs))
    if cfg.trainer.max_steps >= 0:
        total_steps = min(total_steps, cfg.trainer.max_steps)
    progress = ProgressMeter(total_steps, cfg.data.batch_size * worker.world_size,
                             cfg.trainer.log_every, enabled=worker.is_chief)

    metrics: dict = {}
    while session.state.epoch < cfg.trainer.epochs:
        finished = session.train_epoch(train, progress)
        metrics = {"samples_per_s": progress.last_samples_per_s}
        if finished:
            metrics["epoch_rows"] = session.last_epoch_rows
        if valid is not None:
            metrics.update((evaluate_fn or evaluate_ctr)(session, valid, cfg, schema))
        session.checkpoint(metrics)
        if not finished:
            break
    session.close()
    return metrics
