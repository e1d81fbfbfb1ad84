"""Where a worker runs: rank, world size and device, plus the loopback-only defaults, collectives
every session uses and the fault drill (``trainer.fail_at_step``)."""

from __future__ import annotations

import logging
import os
import posixpath
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger("distrec")

LOOPBACK_ENV = {
    "GLOO_SOCKET_IFNAME": "lo",
    "MASTER_ADDR": "127.0.0.1",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "DS_ACCELERATOR": "cpu",
    # idle OpenMP threads sleep instead of spinning: spinning workers on shared cores ran 5-15x slower
    "OMP_WAIT_POLICY": "PASSIVE",
}


def use_loopback_defaults(gpu: bool = False) -> None:
    """Single-machine runs keep every socket on 127.0.0.1 (set before Ray or gloo start)."""
    for key, value in LOOPBACK_ENV.items():
        if key in ("DS_ACCELERATOR", "OMP_WAIT_POLICY") and gpu:
            continue
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class WorkerInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    local_world_size: int  # workers on this host: the planner's host boundary (table_row_wise)

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


def worker_info(use_gpu: bool, cpus_per_worker: float | None = None) -> WorkerInfo:
    """This worker's place; on CPU also caps torch's threads at the worker's CPU share
    (default torch threads per process on a shared machine slow every worker down many-fold)."""
    if cpus_per_worker and not use_gpu:
        torch.set_num_threads(max(1, int(cpus_per_worker)))
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if use_gpu:
        if not torch.cuda.is_available():
            raise RuntimeError("trainer.use_gpu=true but CUDA is not available on this worker")
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))  # set by Ray Train and torchrun
    return WorkerInfo(rank=rank, world_size=world, local_rank=local_rank, device=device,
                      local_world_size=local_world)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_ranks_true(flag: bool, device: torch.device = torch.device("cpu")) -> bool:
    """True only if ``flag`` holds on every rank (a collective: every rank must call it)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([0 if flag else 1], dtype=torch.int32, device=device)
    dist.all_reduce(t)
    return int(t.item()) == 0


def sum_over_ranks(value: int, device: torch.device = torch.device("cpu")) -> int:
    """``value`` summed over every rank (a collective)."""
    t = torch.tensor([value], dtype=torch.int64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
    return int(t.item())


def mean_over_ranks(values: torch.Tensor) -> float:
    """The mean of ``values`` over every rank's elements (a collective)."""
    t = torch.stack([values.detach().sum().cpu(), torch.tensor(float(values.numel()))]).double()
    if dist.is_initialized():
        dist.all_reduce(t)
    return float(t[0] / t[1].clamp(min=1))


def inject_failure_if_due(fail_at_step: int, step: int, worker: WorkerInfo, run_dir: str) -> None:
    """``trainer.fail_at_step``: the last rank dies once at that step (fault-tolerance drills); a
    marker file in ``run_dir`` keeps the restarted run from dying again."""
    if fail_at_step != step or worker.rank != worker.world_size - 1:
        return
    import fsspec

    marker = posixpath.join(run_dir, f".failed-at-step-{step}")
    fs, path = fsspec.core.url_to_fs(marker)
    if fs.exists(path):
        return
    fs.pipe_file(path, b"injected")
    log.error("trainer.fail_at_step=%d: killing rank %d now", step, worker.rank)
    os._exit(17)
