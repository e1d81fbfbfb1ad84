"""The one training loop. Every recipe trains through it, in every worker (a Ray Train worker, or
a local process in tests and benchmarks):

    set-up -> restore -> train; evaluate every ``trainer.eval_every`` steps and/or at epoch ends;
    checkpoint after every evaluation and every ``trainer.checkpoint_every`` steps; early stopping
    on ``trainer.early_stopping`` with the best weights in ``<run_dir>/best`` -> the best (or last)
    weights scored on ``data.test`` -> ``<run_dir>/summary.json``.

A recipe supplies ``build(cfg, schema) -> model`` and ``evaluate(session, feed, cfg, schema) ->
metrics``; phases of a multi-phase recipe (Conure) run ``TrainLoop`` without evaluation.
``TrainLoop`` drives any stepper over any batch source (``distrec.train.stepper``): a
``TrainSession`` over a ``DataFeed`` here, a ``DeepSpeedSession`` for a model trained whole under
DeepSpeed (the MSD student's distillation).

Clocks: ``train_s`` counts training steps only; evaluation and checkpoint I/O are timed apart
(``eval_s``, ``checkpoint_s``), so time-to-accuracy is the same measure for every variant. Each
checkpoint holds the loop's state (curve, early stopping, clocks): a resumed run (``run.resume``,
or Ray Train restarting the workers) goes on from its last checkpoint as if never stopped.
"""

from __future__ import annotations

import itertools
import json
import math
import posixpath
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from distrec.config.load import run_dir
from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError
from distrec.storage import filesystem, write_text_atomic
from distrec.train.data_feed import DataFeed
from distrec.train.distributed import seed_everything, worker_info
from distrec.train.progress import ProgressMeter, configure_logging
from distrec.train.session import TrainSession
from distrec.train.stepper import BatchSource, Stepper

BuildModel = Callable[..., "torch.nn.Module"]  # noqa: F821  (cfg, schema) -> model on meta
Evaluate = Callable[[TrainSession, DataFeed, object, FeatureSchema], dict]
SUMMARY = "summary.json"
LOOP_STATE = "loop"  # key of the loop's state in a checkpoint's meta


def open_feed(cfg, schema, worker, path: str, train: bool) -> DataFeed:
    return DataFeed.open(
        path, schema,
        batch_size=cfg.data.batch_size if train else cfg.data.eval_batch_size,
        rank=worker.rank, world_size=worker.world_size, seed=cfg.run.seed,
        shuffle=cfg.data.shuffle and train, loader_workers=cfg.data.loader_workers,
        s3_endpoint_url=cfg.data.s3_endpoint_url, on_bad_rows=str(cfg.data.on_bad_rows),
    )


@dataclass
class LoopSchedule:
    epochs: int
    max_steps: int = -1  # -1: every epoch
    eval_every: int = 0  # steps; 0: no step-based evaluation
    eval_at_epoch_end: bool = True
    checkpoint_every: int = 0  # steps; 0: only with evaluations (or at epoch ends without any)
    early_stopping_metric: str | None = None
    early_stopping_mode: str = "max"
    patience: int = 0  # evaluations without a better metric before stopping; 0: never stop early
    first_step: int = 0  # the step count when epoch 0 starts (a later phase of a multi-phase recipe)
    checkpoints: bool = True  # False: a phase whose recipe saves its own checkpoint at the end

    @classmethod
    def from_config(cls, trainer) -> "LoopSchedule":
        stop = trainer.early_stopping
        return cls(trainer.epochs, trainer.max_steps, trainer.eval_every, trainer.eval_at_epoch_end,
                   trainer.checkpoint_every, stop.metric, str(stop.mode), stop.patience)


@dataclass
class LoopState:
    """What the loop carries across evaluations (and checkpoints, for resuming)."""

    curve: list = field(default_factory=list)  # one record per evaluation
    best: float | None = None
    best_index: int = -1
    since_best: int = 0
    best_checkpoint: str | None = None
    train_s: float = 0.0
    eval_s: float = 0.0
    checkpoint_s: float = 0.0
    train_s_at_best: float = 0.0


class TrainLoop:
    def __init__(self, session: Stepper, train: BatchSource, schedule: LoopSchedule,
                 evaluate: Callable[[], dict] | None = None, checkpoint_meta: dict | None = None) -> None:
        self.session, self.train, self.schedule = session, train, schedule
        self.evaluate_fn = evaluate
        self.checkpoint_meta = checkpoint_meta or {}
        saved = session.resumed_meta.get(LOOP_STATE)
        self.state = LoopState(**saved) if saved else LoopState()
        self.stopped_early = False
        self.last_metrics: dict = {}
        self.progress: ProgressMeter | None = None

    @property
    def total_steps(self) -> int:
        steps = self.schedule.first_step + sum(self.train.steps(e) for e in range(self.schedule.epochs))
        return min(steps, self.schedule.max_steps) if self.schedule.max_steps >= 0 else steps

    def run(self, progress: ProgressMeter) -> LoopState:
        self.progress = progress
        s, sch, state = self.session, self.schedule, self.session.state
        total = self.total_steps
        while state.epoch < sch.epochs and state.step < total and not self.stopped_early:
            steps = self.train.steps(state.epoch)
            batches = self.train.batches(state.epoch, start_batch=state.batch_in_epoch)
            epoch_done = False
            while not epoch_done and state.step < total and not self.stopped_early:
                # Train up to the next event on a segment of the epoch: the pipeline drains at its
                # end, so no prefetched batch's input all-to-all is in flight while evaluating.
                n = min(self._steps_to_next_event(), steps - state.batch_in_epoch, total - state.step)
                started = time.perf_counter()
                s.train_steps(itertools.islice(batches, n), n, progress)
                self.state.train_s += time.perf_counter() - started
                epoch_done = state.batch_in_epoch >= steps
                if epoch_done:
                    s.end_epoch()
                self._after_segment(epoch_done, state.step >= total)
        return self.state

    def _steps_to_next_event(self) -> int:
        step, sch = self.session.state.step, self.schedule
        every = [e for e in (sch.eval_every if self.evaluate_fn else 0,
                             sch.checkpoint_every if sch.checkpoints else 0) if e > 0]
        return min((e - step % e for e in every), default=1 << 62)

    def _after_segment(self, epoch_done: bool, finished: bool) -> None:
        sch, step = self.schedule, self.session.state.step
        evaluates = self.evaluate_fn is not None and (
            (sch.eval_every and step % sch.eval_every == 0)
            or (epoch_done and sch.eval_at_epoch_end)
            or (finished and not self.state.curve or finished and self.state.curve[-1]["step"] != step))
        metrics = self._evaluate() if evaluates else {}
        if sch.checkpoints and (evaluates or (sch.checkpoint_every and step % sch.checkpoint_every == 0) or (
                epoch_done and self.evaluate_fn is None and sch.checkpoint_every == 0)):
            reported = {"samples_per_s": self.progress.last_samples_per_s}
            if epoch_done:
                reported["epoch_rows"] = self.session.last_epoch_rows
            self._checkpoint({**reported, **metrics})

    def _evaluate(self) -> dict:
        started = time.perf_counter()
        metrics = self.evaluate_fn()
        self.state.eval_s += time.perf_counter() - started
        s, st = self.session, self.state
        record = {"step": s.state.step, "epoch": s.state.epoch, "train_s": st.train_s, **metrics}
        st.curve.append(record)
        self.last_metrics = metrics
        self._track_best(metrics)
        return metrics

    def _track_best(self, metrics: dict) -> None:
        sch, st = self.schedule, self.state
        if not sch.early_stopping_metric:
            return
        if sch.early_stopping_metric not in metrics:
            raise ConfigError(f"trainer.early_stopping.metric={sch.early_stopping_metric!r} is not among the "
                              f"evaluation's metrics: {sorted(metrics)}")
        value = metrics[sch.early_stopping_metric]
        better = st.best is None or (value > st.best if sch.early_stopping_mode == "max" else value < st.best)
        if better and math.isfinite(value):
            st.best, st.best_index, st.since_best, st.train_s_at_best = value, len(st.curve) - 1, 0, st.train_s
            started = time.perf_counter()
            st.best_checkpoint = self.session.save_best(self.checkpoint_meta)
            st.checkpoint_s += time.perf_counter() - started
        else:
            st.since_best += 1
        self.stopped_early = bool(sch.patience) and st.since_best >= sch.patience

    def _checkpoint(self, metrics: dict) -> None:
        started = time.perf_counter()
        meta = {**self.checkpoint_meta, LOOP_STATE: asdict(self.state)}
        self.session.checkpoint(metrics, meta)
        self.state.checkpoint_s += time.perf_counter() - started

    def summary(self, total_wall_s: float) -> dict:
        st = self.state
        best = st.curve[st.best_index] if st.best_index >= 0 else (st.curve[-1] if st.curve else {})
        return {"steps": self.session.state.step, "best_step": best.get("step", 0), "best_valid": best,
                "time_to_best_s": st.train_s_at_best if st.best_index >= 0 else st.train_s,
                "train_s": st.train_s, "eval_s": st.eval_s, "checkpoint_s": st.checkpoint_s,
                "wall_s": total_wall_s, "stopped_early": self.stopped_early,
                "best_checkpoint": st.best_checkpoint, "curve": st.curve}


def train_loop(cfg, in_ray: bool, build: BuildModel, evaluate: Evaluate, *, seed_per_rank: bool = False,
               summary_extra: dict | None = None, checkpoint_meta: dict | None = None) -> dict:
    """Train ``build(cfg, schema)`` on ``data.train`` with the config's schedule; writes and returns
    the run's summary (``summary["final"]``: the last evaluation's metrics, with ``test/...`` ones
    when ``data.test`` is set). ``seed_per_rank``: ranks draw different random numbers
    (e.g. sampled negatives); the weights still start from rank 0's."""
    configure_logging()
    wall_start = time.perf_counter()
    worker = worker_info(cfg.trainer.use_gpu, cfg.trainer.cpus_per_worker)
    seed_everything(cfg.run.seed + (worker.rank if seed_per_rank else 0))
    schema = FeatureSchema.load(cfg.data.schema, cfg.data.s3_endpoint_url)
    out = run_dir(cfg)
    session = TrainSession(cfg, build(cfg, schema), worker, out, in_ray)
    session.restore()

    train = open_feed(cfg, schema, worker, cfg.data.train, train=True)
    feeds = {name: open_feed(cfg, schema, worker, path, train=False)
             for name, path in (("valid", cfg.data.valid), ("test", cfg.data.test)) if path}
    evaluate_valid = (lambda: evaluate(session, feeds["valid"], cfg, schema)) if "valid" in feeds else None
    loop = TrainLoop(session, train, LoopSchedule.from_config(cfg.trainer), evaluate_valid, checkpoint_meta)
    progress = ProgressMeter(loop.total_steps, cfg.data.batch_size * worker.world_size, cfg.trainer.log_every,
                             enabled=worker.is_chief)
    progress.skip_to(session.state.step)
    loop.run(progress)

    final = {"step": session.state.step, "samples_per_s": progress.last_samples_per_s,
             "epoch_rows": session.last_epoch_rows, **loop.last_metrics}
    summary = {**(summary_extra or {}), **loop.summary(time.perf_counter() - wall_start)}
    if "test" in feeds:
        if loop.state.best_checkpoint:
            session.load_weights(loop.state.best_checkpoint)
        summary["test"] = evaluate(session, feeds["test"], cfg, schema)
        session.report(summary["test"], prefix="test/")
        final.update({f"test/{k}": v for k, v in summary["test"].items()})
    summary["final"] = final
    session.close()
    if worker.is_chief:
        write_summary(out, summary)
    return summary


def write_summary(out: str, summary: dict) -> None:
    fs, path = filesystem(out)
    fs.makedirs(path, exist_ok=True)
    write_text_atomic(posixpath.join(out, SUMMARY), json.dumps(summary, indent=2), fs)
