"""What ``distrec.train.loop.TrainLoop`` drives: a *stepper* (a session that trains, checkpoints
and resumes one model) over a *batch source* (an epoch's batches, from any batch on).

Two steppers exist: ``TrainSession`` (a TorchRec model, its optimizers and train pipeline) and
``DeepSpeedSession`` (a model under a DeepSpeed engine, e.g. the MSD student).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol

if TYPE_CHECKING:
    from distrec.train.progress import ProgressMeter


@dataclass
class TrainState:
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of ``epoch`` already trained (the reader resumes after them)
    step: int = 0
    rows_in_epoch: int = 0  # real rows of ``epoch`` trained by all ranks, as of the last sync


class BatchSource(Protocol):
    def steps(self, epoch: int) -> int:
        """Batches (= steps) of ``epoch`` on this rank; equal on every rank."""

    def batches(self, epoch: int, start_batch: int = 0) -> Iterator:
        """``epoch``'s batches from batch ``start_batch`` on, in the order a resumed run sees too."""


class Stepper(Protocol):
    state: TrainState
    resumed_meta: dict  # the meta of the checkpoint resumed from ({} when fresh): the loop's state
    last_epoch_rows: int  # rows trained in the last finished epoch, all ranks

    def train_steps(self, batches: Iterator, n: int, progress: ProgressMeter) -> object:
        """Train ``n`` steps on ``batches``, advancing ``state``; the train loss goes to ``progress``
        and the metrics sinks on log steps."""

    def end_epoch(self) -> None:
        """Move ``state`` to the next epoch."""

    def checkpoint(self, metrics: dict, meta: dict | None = None) -> str:
        """Save everything a resumed run needs, ``meta`` included, and report ``metrics``."""

    def save_best(self, meta: dict | None = None) -> str:
        """Keep the current weights as the best so far."""
