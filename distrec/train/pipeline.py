"""TorchRec's sparse-dist train pipeline, extended with DeepSpeed steps and a NaN/inf policy."""

from __future__ import annotations

import torch
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

from distrec.errors import DistrecError
from distrec.train.distributed import all_ranks_true


class NonFiniteLossError(DistrecError):
    pass


class DistrecTrainPipeline(TrainPipelineSparseDist):
    """Overlaps the next batch's input all-to-all with the current step (TrainPipelineSparseDist).

    With a DeepSpeed ``engine`` the dense part's backward and step go through the engine (ZeRO
    gradient partitioning); the fused embedding update still happens inside backward.
    A non-finite loss on any rank raises ``NonFiniteLossError`` (``nan_policy="error"``) or skips
    backward and step on every rank (``"skip"``) — the check comes before backward because the
    fused embedding optimizer updates during backward and could not be undone afterwards.
    """

    def __init__(self, model, optimizer, device: torch.device, engine=None, nan_policy: str = "error"):
        super().__init__(model, optimizer, device, execute_all_batches=True)
        self._engine = engine
        self._nan_policy = nan_policy
        self._skip_update = False
        self.steps_done = 0
        self.skipped_steps = 0

    def _backward(self, losses: torch.Tensor) -> None:
        self._skip_update = not all_ranks_true(bool(torch.isfinite(losses).all()), losses.device)
        if self._skip_update:
            if self._nan_policy == "error":
                raise NonFiniteLossError(
                    f"loss is {losses.detach().sum().item()} (non-finite) at step {self.steps_done + 1}; "
                    "check the input data and learning rates, or set trainer.nan_policy=skip"
                )
            self.skipped_steps += 1
            return
        if self._engine is not None:
            self._engine.backward(torch.sum(losses, dim=0))
        else:
            super()._backward(losses)

    def _optimizer_step(self) -> None:
        self.steps_done += 1
        if self._skip_update:
            return
        super()._optimizer_step()
        if self._engine is not None:
            self._engine.step()
