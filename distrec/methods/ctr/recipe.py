"""CTR recipe: DCN-v2 / DeepFM / DLRM (``distrec/models/ctr.py``) on TorchRec-sharded tables,
trained by the engine's loop and evaluated with AUC / GAUC / LogLoss on the validation split."""

from __future__ import annotations

from distrec.metrics import CtrMetricAccumulator
from distrec.models.ctr import build_ctr_model as build_model
from distrec.train.evaluation import evaluate_checkpoint
from distrec.train.loop import train_loop


def evaluate(session, feed, cfg, schema) -> dict:
    accumulator = CtrMetricAccumulator()
    session.evaluate(feed, lambda out: accumulator.update(out["preds"], out["labels"], out["weights"], out["groups"]))
    return accumulator.compute(names=tuple(cfg.metrics.names))


def train_worker(cfg, in_ray: bool = False) -> dict:
    return train_loop(cfg, in_ray, build_model, evaluate)["final"]


def eval_worker(cfg, in_ray: bool = False) -> dict:
    return evaluate_checkpoint(cfg, in_ray, build_model, evaluate)


__all__ = ["build_model", "eval_worker", "evaluate", "train_worker"]
