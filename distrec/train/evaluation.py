"""``distrec eval``: the exact metrics of saved weights on any split, in every worker.

The recipe's own ``build_model`` and ``evaluate`` (the ones its training loop uses) score
``evaluation.checkpoint`` on ``evaluation.split``, sharded over the workers like training, so a
checkpoint's test metrics equal those the run reported for the same weights. The result goes to
``<run_dir>/summary.json`` (``final``) and every metrics sink with the split as prefix.
"""

from __future__ import annotations

import posixpath

from distrec.config.load import run_dir
from distrec.data.schema import FeatureSchema
from distrec.errors import CheckpointError, ConfigError
from distrec.storage import filesystem
from distrec.train.checkpoint import BEST_DIR, latest_checkpoint
from distrec.train.distributed import seed_everything, worker_info
from distrec.train.loop import BuildModel, Evaluate, open_feed, write_summary
from distrec.train.progress import configure_logging
from distrec.train.session import TrainSession

CHECKPOINT_META = "meta.json"


def resolve_checkpoint(path: str, s3_endpoint_url: str | None = None) -> str:
    """A checkpoint directory as given, or for a run directory its best weights (else its latest
    checkpoint)."""
    fs, fs_path = filesystem(path, s3_endpoint_url)
    if fs.exists(posixpath.join(fs_path, CHECKPOINT_META)):
        return path
    for candidate in (posixpath.join(path, BEST_DIR), path):
        found = latest_checkpoint(candidate)
        if found:
            return found
    raise CheckpointError(f"--checkpoint {path}: neither a checkpoint (no {CHECKPOINT_META}) nor a run "
                          f"directory with {BEST_DIR}/ or checkpoints/latest")


def split_path(cfg) -> str:
    split = cfg.evaluation.split
    if split in ("test", "valid"):
        path = cfg.data[split]
        if not path:
            raise ConfigError(f"--split {split}: data.{split} is not set in the config; give a Parquet path instead")
        return path
    return split


def split_label(split: str) -> str:
    return split if split in ("test", "valid") else "eval"


def evaluate_checkpoint(cfg, in_ray: bool, build: BuildModel, evaluate: Evaluate) -> dict:
    """Score ``cfg.evaluation.checkpoint`` on ``cfg.evaluation.split``; returns the metrics."""
    configure_logging()
    worker = worker_info(cfg.trainer.use_gpu, cfg.trainer.cpus_per_worker)
    seed_everything(cfg.run.seed)
    schema = FeatureSchema.load(cfg.data.schema, cfg.data.s3_endpoint_url)
    out = run_dir(cfg)
    session = TrainSession(cfg, build(cfg, schema), worker, out, in_ray)
    session.load_weights(cfg.evaluation.checkpoint)
    feed = open_feed(cfg, schema, worker, split_path(cfg), train=False)
    metrics = evaluate(session, feed, cfg, schema)
    session.report(metrics, prefix=f"{split_label(cfg.evaluation.split)}/")
    session.close()
    if worker.is_chief:
        write_summary(out, {"checkpoint": cfg.evaluation.checkpoint, "split": split_path(cfg), "final": metrics})
    return metrics
