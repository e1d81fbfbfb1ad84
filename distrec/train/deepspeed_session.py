"""One worker's session for a model trained whole under a DeepSpeed engine (no TorchRec tables,
e.g. the MSD student): a stepper (``distrec.train.stepper``) that ``TrainLoop`` drives like
``TrainSession``.

Checkpoints are the engine's own (``engine.save_checkpoint``: weights and every rank's ZeRO
partition of the optimizer state), published like every distrec checkpoint
(``checkpoint.write_checkpoint``: a temporary directory renamed when complete, ``latest`` written
last, the newest ``trainer.keep_checkpoints`` kept) with a ``meta.json`` of the train state, the
loop's state and the run's ``inputs``. ``restore`` resumes from the newest checkpoint only when it
was written for the same ``inputs`` (what decides the training trajectory: data, optimizer,
world size); otherwise the run starts fresh. DeepSpeed writes with ``torch.save``: checkpoints
need a local (or mounted shared) directory.
"""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import asdict
from typing import Callable, Iterator

import fsspec
import torch

from distrec.errors import CheckpointError
from distrec.train.checkpoint import (
    BEST_DIR,
    is_local_fs,
    latest_checkpoint,
    read_meta,
    write_checkpoint,
)
from distrec.train.distributed import (
    WorkerInfo,
    barrier,
    inject_failure_if_due,
    mean_over_ranks,
    sum_over_ranks,
)
from distrec.train.progress import MetricsSink, ProgressMeter
from distrec.train.stepper import TrainState

log = logging.getLogger("distrec")


class DeepSpeedSession:
    def __init__(self, cfg, engine, loss: Callable[[object], torch.Tensor], worker: WorkerInfo, run_dir: str,
                 checkpoint_dir: str, inputs: dict) -> None:
        """``loss(batch)``: the training loss of one batch (``len(batch)`` rows) under ``engine``;
        metrics go to ``run_dir``, checkpoints to ``checkpoint_dir``."""
        self.cfg, self.engine, self.loss, self.worker = cfg, engine, loss, worker
        self.run_dir, self.checkpoint_dir = run_dir, checkpoint_dir
        self.inputs = json.loads(json.dumps(inputs))  # as meta.json gives it back, for comparing
        self.can_checkpoint = is_local_fs(fsspec.core.url_to_fs(checkpoint_dir)[0])
        self.state = TrainState()
        self.resumed_meta: dict = {}
        self.last_epoch_rows = 0
        self.train_losses: list[float] = []  # the mean train loss of every log step
        self.sink = MetricsSink(run_dir, worker.is_chief, cfg.metrics.tensorboard)
        self._unsynced_rows = 0

    # --- start ---------------------------------------------------------------------------
    def restore(self) -> None:
        """Resume from the newest checkpoint when it was written for this run's ``inputs``; else
        start fresh, removing the checkpoints of the other inputs (they must not be resumed later,
        nor pruned in among this run's)."""
        path = latest_checkpoint(self.checkpoint_dir) if self.can_checkpoint else None
        meta = read_meta(path) if path else None
        if meta is not None and meta.get("inputs") == self.inputs:
            root, tag = posixpath.split(fsspec.core.url_to_fs(path)[1])
            loaded, _ = self.engine.load_checkpoint(root, tag=tag)
            if loaded is None:
                raise CheckpointError(f"DeepSpeed could not load {path}")
            self.state = TrainState(meta["epoch"], meta["batch_in_epoch"], meta["step"], meta["rows_in_epoch"])
            self.train_losses = list(meta["train_losses"])
            self.resumed_meta = meta
            self.sink.keep_until(self.state.step)  # the steps after it are trained (and logged) again
            self.info(f"resumed from {path} at epoch {self.state.epoch}, step {self.state.step}")
            return
        if meta is not None:
            changed = sorted(k for k in {*self.inputs, *meta.get("inputs", {})}
                             if meta.get("inputs", {}).get(k) != self.inputs.get(k))
            self.info(f"{path} was written for other inputs (changed: {', '.join(changed)}): starting fresh")
            barrier()  # every rank has read it
            if self.worker.is_chief:
                fs, directory = fsspec.core.url_to_fs(self.checkpoint_dir)
                fs.rm(directory, recursive=True)
            barrier()
        self.sink.keep_until(-1)  # a fresh run: no records of an earlier run in this directory

    # --- train ---------------------------------------------------------------------------
    def train_steps(self, batches: Iterator, n: int, progress: ProgressMeter) -> torch.Tensor | None:
        """Train ``n`` steps on ``batches``; returns the last step's loss."""
        loss = None
        self.engine.train()
        for _, batch in zip(range(n), batches):
            loss = self.loss(batch)
            self.engine.backward(loss)
            self.engine.step()
            self.state.batch_in_epoch += 1
            self.state.step += 1
            self._unsynced_rows += len(batch)
            inject_failure_if_due(self.cfg.trainer.fail_at_step, self.state.step, self.worker, self.run_dir)
            mean = mean_over_ranks(loss.reshape(1)) if progress.is_log_step(self.state.step) else None
            progress.step(self.state.step, mean, self.state.epoch)
            if mean is not None:
                self.train_losses.append(mean)
                self.sink.write({"loss": mean, "samples_per_s": progress.last_samples_per_s},
                                self.state.step, prefix="train/")
        return loss

    def end_epoch(self) -> None:
        self._sync_rows()
        self.last_epoch_rows = self.state.rows_in_epoch
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        self.state.rows_in_epoch = 0

    def _sync_rows(self) -> None:
        self.state.rows_in_epoch += sum_over_ranks(self._unsynced_rows, self.worker.device)
        self._unsynced_rows = 0

    # --- save and report -----------------------------------------------------------------
    def checkpoint(self, metrics: dict, meta: dict | None = None) -> str:
        path = self._save(self.checkpoint_dir, meta, self.cfg.trainer.keep_checkpoints)
        self.report(metrics)
        return path

    def save_best(self, meta: dict | None = None) -> str:
        return self._save(posixpath.join(self.checkpoint_dir, BEST_DIR), meta, keep=1)

    def _save(self, directory: str, meta: dict | None, keep: int) -> str:
        self._sync_rows()

        def write_state(url: str) -> None:
            root, tag = posixpath.split(fsspec.core.url_to_fs(url)[1])
            self.engine.save_checkpoint(root, tag=tag, save_latest=False)  # distrec publishes it

        meta = {**asdict(self.state), "inputs": self.inputs, "train_losses": self.train_losses, **(meta or {})}
        return write_checkpoint(directory, self.state.step, write_state, meta, keep)

    def report(self, metrics: dict) -> None:
        self.sink.write(metrics, self.state.step)

    def close(self) -> None:
        self.sink.close()

    def info(self, message: str) -> None:
        if self.worker.is_chief:
            log.info(message)
