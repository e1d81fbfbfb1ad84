"""Collectives for exact metrics: gather variable-length tensors and sum tensors across ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _comm_device(t: torch.Tensor) -> torch.device:
    # NCCL only moves CUDA tensors; gloo works on CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_tensors(t: torch.Tensor) -> torch.Tensor:
    """Concatenate `t` ([N] or [N, ...], N may differ per rank) from every rank, in rank order.

    Collective: every rank must call it. Trailing dims and dtype must match across ranks.
    Identity when torch.distributed is not initialised or the world size is 1.
    """
    if not _distributed():
        return t
    out_device, out_dtype = t.device, t.dtype
    # gloo has no bool all_gather.
    x = t.to(device=_comm_device(t), dtype=torch.uint8 if t.dtype == torch.bool else t.dtype)
    world = dist.get_world_size()

    size = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    lengths = [int(s.item()) for s in sizes]
    max_len = max(lengths)
    if max_len == 0:
        return t

    padded = x.new_zeros((max_len, *x.shape[1:]))
    padded[: x.shape[0]] = x
    chunks = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)
    out = torch.cat([c[:n] for c, n in zip(chunks, lengths)])
    return out.to(device=out_device, dtype=out_dtype)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of `t` over ranks (returns a new tensor; identity when not distributed)."""
    if not _distributed():
        return t.clone()
    x = t.to(_comm_device(t), copy=True)
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x.to(t.device)
