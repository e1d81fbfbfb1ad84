"""Run a function on N local processes joined by a process group, without Ray (tests,
benchmarks, debugging).

``spawn(fn, world_size, *args)`` calls ``fn(rank, *args)`` in N fresh processes with a
process group on 127.0.0.1 and returns the per-rank return values (which must be picklable).
"""

from __future__ import annotations

import os
import socket
import time
import traceback

import torch.distributed as dist
import torch.multiprocessing as mp

from distrec.train.distributed import use_loopback_defaults


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(rank: int, world_size: int, port: int, backend: str, child_setup, fn, args, results) -> None:
    use_loopback_defaults(gpu="nccl" in backend)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_PORT=str(port))
    if child_setup is not None:
        child_setup()
    if "nccl" in backend:
        import torch

        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        results[rank] = ("ok", fn(rank, *args))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent with its traceback
        results[rank] = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        raise
    finally:
        dist.destroy_process_group()


def spawn(fn, world_size: int, *args, timeout_s: float = 600, backend: str = "gloo",
          start_method: str = "spawn", preload: list[str] | None = None, child_setup=None):
    """``start_method="forkserver"`` with ``preload`` modules makes repeated calls cheap: the
    children fork from a server that imported them once."""
    ctx_mp = mp.get_context(start_method)
    if preload and start_method == "forkserver":
        ctx_mp.set_forkserver_preload(preload)
    with ctx_mp.Manager() as manager:
        results = manager.dict()
        ctx = mp.start_processes(_run, args=(world_size, free_port(), backend, child_setup, fn, args, results),
                                 nprocs=world_size, join=False, start_method=start_method)
        deadline = time.monotonic() + timeout_s
        try:
            while not ctx.join(timeout=2):
                if time.monotonic() > deadline:
                    for process in ctx.processes:
                        process.kill()
                    raise TimeoutError(f"spawned workers did not finish within {timeout_s:.0f} s")
        except mp.ProcessRaisedException:
            errors = [v[1] for v in results.values() if v[0] == "error"]
            raise RuntimeError("a spawned worker failed:\n" + "\n".join(errors)) from None
        return [results[r][1] for r in range(world_size)]
