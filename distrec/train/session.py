"""One worker's training session: the sharded model, its optimizers, TorchRec's train pipeline,
checkpoints and reports. ``distrec.train.loop`` drives training through it; recipes with phases
(Conure) start a phase with ``begin_phase`` and train it with the same loop."""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import asdict
from typing import Callable, Iterator

import fsspec
import torch
import torch.distributed as dist

from distrec.errors import CheckpointError
from distrec.train.checkpoint import (
    BEST_DIR,
    latest_checkpoint,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from distrec.train.data_feed import DataFeed
from distrec.train.dense_optim import build_optimizers
from distrec.train.distributed import WorkerInfo, inject_failure_if_due, sum_over_ranks
from distrec.train.pipeline import DistrecTrainPipeline
from distrec.train.progress import (
    MetricsSink,
    MlflowTarget,
    ProgressMeter,
    flatten,
    report_to_ray,
)
from distrec.train.sharded_model import shard_model
from distrec.train.stepper import TrainState

log = logging.getLogger("distrec")


def mlflow_target(cfg) -> MlflowTarget | None:
    if not cfg.metrics.mlflow_tracking_uri:
        return None
    from distrec.config.load import config_to_dict, redact_secrets

    return MlflowTarget(cfg.metrics.mlflow_tracking_uri, cfg.metrics.mlflow_experiment, cfg.run.name,
                        flatten(redact_secrets(config_to_dict(cfg))))


class TrainSession:
    def __init__(self, cfg, model: torch.nn.Module, worker: WorkerInfo, run_dir: str, in_ray: bool):
        self.cfg = cfg
        self.worker = worker
        self.run_dir = run_dir
        self.in_ray = in_ray
        self.dmp, self.plan = shard_model(model, cfg, worker)
        self.opt = build_optimizers(self.dmp, self.dmp.module.dense, cfg)
        self.pipeline = DistrecTrainPipeline(
            self.dmp, self.opt.optimizer, worker.device, self.opt.engine, cfg.trainer.nan_policy
        )
        self.state = TrainState()
        self.sink = MetricsSink(run_dir, worker.is_chief, cfg.metrics.tensorboard, mlflow_target(cfg))
        self.last_checkpoint: str | None = None
        self.resumed_meta: dict = {}  # the meta of the checkpoint restored (loop state included)
        self.last_epoch_rows = 0  # real rows trained in the last finished epoch, all ranks
        self._unsynced_rows = 0  # this rank's real rows since the last sync
        if in_ray:
            self._record_placement()

    # --- start ---------------------------------------------------------------------------
    def restore(self) -> None:
        """Continue from a checkpoint (weights, optimizer state, reader position): the one Ray Train
        hands a restarted worker group after a failure, else with ``run.resume`` the run's latest.
        ``run.init_from``: start from another checkpoint's weights only."""
        path = self._newest(self._ray_restart_checkpoint())
        if path is None and self.cfg.run.resume:
            path = latest_checkpoint(self.run_dir)
            if path is None:
                self.info(f"run.resume=true but {self.run_dir} has no checkpoint yet: starting fresh")
        if path is not None:
            meta = load_checkpoint(path, self.dmp, self.opt.optimizer, self.opt.engine)
            self.state = TrainState(meta["epoch"], meta["batch_in_epoch"], meta["step"],
                                    meta.get("rows_in_epoch", 0))
            self.last_checkpoint, self.resumed_meta = path, meta
            self.sink.keep_until(self.state.step)  # the steps after it are trained (and logged) again
            self.info(f"resumed from {path} at epoch {self.state.epoch}, step {self.state.step} "
                      f"(optimizer state {'restored' if meta['optimizer_restored'] else 'fresh'})")
            return
        self.sink.keep_until(-1)  # a fresh run: no records of an earlier run in this directory
        if self.cfg.run.init_from:
            load_checkpoint(self.cfg.run.init_from, self.dmp, None, self.opt.engine)
            self.info(f"initialised model weights from {self.cfg.run.init_from}")

    def _record_placement(self) -> None:
        """Write ``placement.json``: which host and Ray node runs each rank."""
        import socket

        import ray

        mine = {"rank": self.worker.rank, "host": socket.gethostname(),
                "node_id": ray.get_runtime_context().get_node_id()}
        everyone = [None] * self.worker.world_size
        if dist.is_initialized():
            dist.all_gather_object(everyone, mine)
        else:
            everyone = [mine]
        if self.worker.is_chief:
            with fsspec.open(posixpath.join(self.run_dir, "placement.json"), "w") as fh:
                json.dump(everyone, fh, indent=1)

    def _newest(self, ray_path: str | None) -> str | None:
        """On a Ray restart: Ray's checkpoint, or the run's newest complete one when that is newer.
        Ray takes in a report asynchronously: a worker that dies right after reporting leaves Ray
        with an older checkpoint, which rotation (``keep``) may already have deleted."""
        if ray_path is None:
            return None
        newest = latest_checkpoint(self.run_dir)
        if newest is None or newest == ray_path:
            return ray_path
        try:
            ray_step = read_meta(ray_path)["step"]
        except CheckpointError:
            ray_step = -1
        if read_meta(newest)["step"] > ray_step:
            self.info(f"Ray handed {ray_path}; {newest} is newer: resuming from it")
            return newest
        return ray_path

    def _ray_restart_checkpoint(self) -> str | None:
        if not self.in_ray:
            return None
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        scheme = getattr(checkpoint.filesystem, "type_name", "local")
        return checkpoint.path if scheme == "local" else f"{scheme}://{checkpoint.path}"

    # --- train ---------------------------------------------------------------------------
    def begin_phase(self, pipeline_factory: Callable | None = None) -> None:
        """A fresh optimizer (and pipeline) for the next phase of a multi-phase recipe, after the
        recipe changed which parameters train; the step count goes on, the epoch restarts."""
        self.pipeline.detach()
        self.opt = build_optimizers(self.dmp, self.dmp.module.dense, self.cfg)
        make = pipeline_factory or DistrecTrainPipeline
        self.pipeline = make(self.dmp, self.opt.optimizer, self.worker.device, self.opt.engine,
                             self.cfg.trainer.nan_policy)
        self.state = TrainState(step=self.state.step)

    def train_steps(self, batches: Iterator, n: int, progress: ProgressMeter) -> dict | None:
        """Train ``n`` steps on ``batches`` (the current epoch's, from ``state.batch_in_epoch``);
        the train loss goes to the progress log and every metrics sink on log steps. Returns the
        last step's outputs."""
        outputs = None
        self.dmp.train()
        for _ in range(n):
            outputs = self.pipeline.progress(batches)
            self.state.batch_in_epoch += 1
            self.state.step += 1
            if "weights" in outputs:
                self._unsynced_rows += int((outputs["weights"] > 0).sum())
            inject_failure_if_due(self.cfg.trainer.fail_at_step, self.state.step, self.worker, self.run_dir)
            if progress.is_log_step(self.state.step):
                loss = self.mean_loss(outputs)
                progress.step(self.state.step, loss, self.state.epoch)
                self.sink.write({"loss": loss, "samples_per_s": progress.last_samples_per_s},
                                self.state.step, prefix="train/")
            else:
                progress.step(self.state.step, None, self.state.epoch)
        return outputs

    def end_epoch(self) -> None:
        """Move the state to the next epoch (every rank's trained rows summed into ``last_epoch_rows``)."""
        self._sync_rows()
        self.last_epoch_rows = self.state.rows_in_epoch
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        self.state.rows_in_epoch = 0

    def train_epoch(self, feed: DataFeed, progress: ProgressMeter) -> bool:
        """Train the rest of ``state.epoch``; False when ``trainer.max_steps`` stopped it early."""
        steps = feed.steps(self.state.epoch)
        max_steps = self.cfg.trainer.max_steps
        n = steps - self.state.batch_in_epoch
        if max_steps >= 0:
            n = min(n, max_steps - self.state.step)
        self.train_steps(feed.batches(self.state.epoch, start_batch=self.state.batch_in_epoch), max(n, 0), progress)
        if self.state.batch_in_epoch < steps:
            return False
        self.end_epoch()
        return True

    def _sync_rows(self) -> None:
        """Add every rank's rows trained since the last sync to ``state.rows_in_epoch``."""
        self.state.rows_in_epoch += sum_over_ranks(self._unsynced_rows, self.worker.device)
        self._unsynced_rows = 0

    def mean_loss(self, outputs: dict) -> float:
        """Loss averaged over every rank's real rows (a collective on log steps only)."""
        real = outputs["weights"].sum()
        t = torch.stack([outputs["loss"] * real, real]).double()
        if dist.is_initialized():
            dist.all_reduce(t)
        return float(t[0] / t[1].clamp(min=1))

    # --- evaluate ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, feed: DataFeed, update: Callable[[dict], None]) -> None:
        """Run the model over ``feed`` and hand each batch's outputs to ``update``; every rank
        runs the same number of steps (padding batches have weight 0)."""
        self.pipeline.detach()
        self.dmp.eval()
        for batch in feed.batches(epoch=0):
            _, outputs = self.dmp(batch.to(self.worker.device))
            update(outputs)
        self.dmp.train()

    # --- save and report -----------------------------------------------------------------
    def checkpoint(self, metrics: dict, meta: dict | None = None, report: bool = True) -> str:
        """Save weights, optimizer state, the train state and ``meta`` (e.g. the loop's state) as the
        run's next checkpoint; reported to Ray Train (with ``metrics``) so a restart finds it."""
        self._sync_rows()
        path = save_checkpoint(
            self.run_dir, self.state.step, self.dmp, self.opt.optimizer, self.opt.engine,
            meta={**asdict(self.state), **(meta or {})}, keep=self.cfg.trainer.keep_checkpoints,
        )
        self.last_checkpoint = path
        if report:
            self.report(metrics, path)
        return path

    def save_best(self, meta: dict | None = None) -> str:
        """The weights of the best evaluation so far, in ``<run_dir>/best`` (one kept)."""
        return save_checkpoint(posixpath.join(self.run_dir, BEST_DIR), self.state.step, self.dmp,
                               self.opt.optimizer, self.opt.engine, meta={**asdict(self.state), **(meta or {})},
                               keep=1)

    def load_weights(self, path: str) -> None:
        load_checkpoint(path, self.dmp)

    def report(self, metrics: dict, checkpoint_path: str | None = None, prefix: str = "") -> None:
        self.sink.write(metrics, self.state.step, prefix)
        if self.in_ray:
            payload = {"step": self.state.step, "epoch": self.state.epoch,
                       **{f"{prefix}{k}": v for k, v in metrics.items()}}
            report_to_ray(payload, checkpoint_path if self.worker.is_chief else None)

    def close(self) -> None:
        self.pipeline.detach()
        self.sink.close()

    def info(self, message: str) -> None:
        if self.worker.is_chief:
            log.info(message)

