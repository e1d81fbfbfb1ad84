"""Training progress for people (log lines with samples/s and ETA) and for tools (TensorBoard,
metrics.jsonl, Ray Train reports)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import posixpath
import tempfile
import time
import warnings
from dataclasses import dataclass

import fsspec
from fsspec.implementations.local import LocalFileSystem

from distrec.storage import write_text_atomic

log = logging.getLogger("distrec")


NOISY_LOGGERS = ("torchrec", "fbgemm_gpu", "torch.distributed", "deepspeed", "DeepSpeed")


def configure_logging() -> None:
    """distrec's own progress at INFO; the libraries' per-table and per-step chatter at WARNING."""
    # fbgemm logs every table's arguments on the root logger at INFO: keep the root at WARNING.
    logging.getLogger().setLevel(logging.WARNING)
    ours = logging.getLogger("distrec")
    ours.setLevel(logging.INFO)
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s distrec: %(message)s", "%H:%M:%S"))
        ours.addHandler(handler)
        ours.propagate = False
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("torchrec.distributed.planner").setLevel(logging.ERROR)  # "use TopologyFactory"
    # torchrec's tracing checks call torch.fx's is_fx_tracing, which warns that it is deprecated
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"torchrec\..*")
    warnings.filterwarnings("ignore", message=r".*(TopologyFactory|is_fx_tracing|dense tensor size).*")
    # torchrec's collectives call torch.distributed functions deprecated in torch 2.13
    # (reduce_scatter_tensor, all_gather_into_tensor); nothing a user of distrec can change
    warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.distributed\.\w+` is deprecated")
    # torchrec's sharded tables are ShardedTensors, which torch's checkpoint planner calls deprecated
    warnings.filterwarnings("ignore", category=FutureWarning, message=r"Please use DTensor instead")


# Bookkeeping in a run's final record, left out of the summary's headline metrics.
_NOT_HEADLINE = {"step", "epoch_rows", "num_rows", "samples_per_s"}
_HEADLINE_FIRST = ("auc", "gauc", "logloss")


def run_summary(run_dir: str, metrics: dict, max_metrics: int = 6) -> str:
    """The block ``distrec run`` ends with: headline metrics (4 significant digits), where the run
    wrote its files, and how to look at them."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and k not in _NOT_HEADLINE and not k.endswith("_s")}
    first = {name: i for i, name in enumerate(_HEADLINE_FIRST)}
    names = sorted(numbers, key=lambda k: (first.get(k, len(first)), k))  # auc, gauc, logloss, then by name
    shown = "  ".join(f"{k} {numbers[k]:.4g}" for k in names[:max_metrics]) or "none recorded"
    if len(names) > max_metrics:
        shown += f"  (+{len(names) - max_metrics} more)"
    facts = [f"step {metrics['step']}" if "step" in metrics else "",
             f"{metrics['num_rows']} eval rows" if "num_rows" in metrics else "",
             f"{metrics['samples_per_s']:.0f} samples/s" if metrics.get("samples_per_s") else ""]
    join = posixpath.join if "://" in run_dir else os.path.join
    return "\n".join([
        "done: " + (", ".join(f for f in facts if f) or "training finished"),
        f"  metrics      {shown}",
        f"  run dir      {run_dir}  (every metric: metrics.jsonl)",
        f"  curves       {join(run_dir, 'curves.png')}",
        f"  TensorBoard  tensorboard --logdir {join(run_dir, 'tensorboard')}",
    ])


class ProgressMeter:
    """Logs every ``log_every`` steps: step, loss, global samples/s and the ETA of the run."""

    def __init__(self, total_steps: int, global_batch: int, log_every: int, enabled: bool = True):
        self.total_steps = max(total_steps, 1)
        self.global_batch = global_batch
        self.log_every = max(log_every, 1)
        self.enabled = enabled
        self._start = time.perf_counter()
        self._window_start = self._start
        self._window_steps = 0
        self._first_step = 0
        self.last_samples_per_s = 0.0

    def skip_to(self, step: int) -> None:
        """A resumed run starts at ``step``: the ETA counts only the steps trained from here."""
        self._first_step = step

    def is_log_step(self, step: int) -> bool:
        return step % self.log_every == 0 or step == self.total_steps

    def step(self, step: int, loss: float | None, epoch: int) -> None:
        self._window_steps += 1
        if not self.is_log_step(step):
            return
        now = time.perf_counter()
        self.last_samples_per_s = self._window_steps * self.global_batch / max(now - self._window_start, 1e-9)
        eta = (now - self._start) / max(step - self._first_step, 1) * (self.total_steps - step)
        self._window_start, self._window_steps = now, 0
        if self.enabled:
            loss_txt = f"{loss:.5f}" if loss is not None else "n/a"
            log.info(
                "epoch %d step %d/%d (%.0f%%) | loss %s | %.0f samples/s | ETA %s",
                epoch, step, self.total_steps, 100.0 * step / self.total_steps, loss_txt,
                self.last_samples_per_s, datetime.timedelta(seconds=int(eta)),
            )


class MetricsSink:
    """Chief-only writer of TensorBoard events and ``metrics.jsonl`` in the run directory.

    On object stores (no append) ``metrics.jsonl`` is rewritten whole on every write, earlier
    records of a resumed run included, and the event files are written locally and uploaded at
    close."""

    def __init__(self, run_dir: str, enabled: bool, tensorboard: bool, mlflow: "MlflowTarget | None" = None):
        self.enabled = enabled
        self._mlflow = mlflow.start() if (enabled and mlflow is not None) else None
        self.run_dir = run_dir
        self._fs, self._path = fsspec.core.url_to_fs(run_dir)
        self._local = isinstance(self._fs, LocalFileSystem)
        self._records: list[str] = []
        metrics_path = posixpath.join(self._path, "metrics.jsonl")
        if enabled and not self._local and self._fs.exists(metrics_path):
            self._records = self._fs.cat_file(metrics_path).decode().splitlines(keepends=True)
        self._tb = None
        self._tb_dir = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb_dir = os.path.join(self._path, "tensorboard") if self._local else tempfile.mkdtemp(prefix="tb-")
            self._tb = SummaryWriter(log_dir=self._tb_dir)

    def write(self, metrics: dict, step: int, prefix: str = "") -> None:
        if not self.enabled:
            return
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{prefix}{key}", value, step)
            self._tb.flush()
        if self._mlflow is not None:
            self._mlflow.log_metrics({f"{prefix}{k}".replace("/", "_"): float(v) for k, v in metrics.items()
                                      if isinstance(v, (int, float)) and v == v}, step=step)
        line = json.dumps({"step": step, **{f"{prefix}{k}": v for k, v in metrics.items()}}) + "\n"
        target = posixpath.join(self._path, "metrics.jsonl")
        if self._local:
            os.makedirs(self._path, exist_ok=True)
            with open(target, "a") as fh:
                fh.write(line)
        else:
            self._records.append(line)
            self._fs.pipe_file(target, "".join(self._records).encode())

    def keep_until(self, step: int) -> None:
        """Drop the records of steps after ``step`` from ``metrics.jsonl``: a resumed run replays
        them, a fresh run (``step=-1``) starts an empty file."""
        target = posixpath.join(self._path, "metrics.jsonl")
        if not self.enabled or not self._fs.exists(target):
            return
        records = self._fs.cat_file(target).decode().splitlines(keepends=True)
        kept = [line for line in records if line.strip() and json.loads(line).get("step", 0) <= step]
        if len(kept) < len(records):
            write_text_atomic(posixpath.join(self.run_dir, "metrics.jsonl"), "".join(kept), self._fs)
        if not self._local:
            self._records = kept

    def close(self) -> None:
        if self._mlflow is not None:
            self._mlflow.end_run()
            self._mlflow = None
        if self._tb is None:
            return
        self._tb.close()
        if not self._local:
            self._fs.put(self._tb_dir, posixpath.join(self._path, "tensorboard"), recursive=True)


@dataclass
class MlflowTarget:
    """Optional MLflow logging (``metrics.mlflow_tracking_uri``): the resolved config as params,
    every metric the run writes as MLflow metrics."""

    tracking_uri: str
    experiment: str
    run_name: str
    params: dict

    def start(self):
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_experiment(self.experiment)
        mlflow.start_run(run_name=self.run_name)
        mlflow.log_params({k: str(v)[:500] for k, v in self.params.items()})
        return mlflow


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def report_to_ray(metrics: dict, checkpoint_path: str | None) -> None:
    """Report through Ray Train when running under it; the checkpoint is already in storage."""
    import ray.train

    checkpoint = None
    if checkpoint_path is not None:
        local = "://" not in checkpoint_path
        checkpoint = ray.train.Checkpoint(os.path.abspath(checkpoint_path) if local else checkpoint_path)
    ray.train.report(
        metrics,
        checkpoint=checkpoint,
        checkpoint_upload_mode=ray.train.CheckpointUploadMode.NO_UPLOAD,
    )
