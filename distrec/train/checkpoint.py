"""DCP checkpoints of the sharded model and its optimizers, written so a crash never leaves a
checkpoint that looks complete.

Layout under the run directory (local or any fsspec URL, e.g. s3://)::

    checkpoints/step-000000120/   DCP files (every rank's shards), meta.json, deepspeed/ (if used)
    checkpoints/latest            name of the newest complete checkpoint (written last)

A checkpoint is written to ``checkpoints/.tmp-step-N`` and renamed when complete (local disks);
on object stores, where rename is a copy, it is written in place and only ``latest`` (replaced
last) makes it visible. ``write_checkpoint`` publishes another writer's files the same way (a
DeepSpeed engine's own checkpoint: ``distrec.train.deepspeed_session``). Loading reshards: a checkpoint saved by N workers loads onto M workers
or another sharding plan.
"""

from __future__ import annotations

import json
import logging
import posixpath
from contextlib import nullcontext
from typing import Callable

import fsspec
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter

from distrec.errors import CheckpointError
from distrec.train.distributed import barrier

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"
LATEST = "latest"
BEST_DIR = "best"  # beside checkpoints/: the weights of the best evaluation (one kept)


def _fs(url: str):
    return fsspec.core.url_to_fs(url)


def is_local_fs(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def checkpoint_root(run_dir: str) -> str:
    return posixpath.join(run_dir, CHECKPOINTS)


def latest_checkpoint(run_dir: str) -> str | None:
    """Path of the newest complete checkpoint in ``run_dir``, or None."""
    root = checkpoint_root(run_dir)
    fs, path = _fs(root)
    pointer = posixpath.join(path, LATEST)
    if not fs.exists(pointer):
        return None
    name = fs.cat_file(pointer).decode().strip()
    return posixpath.join(root, name)


def _gathered(engine):
    """ZeRO-3 partitions dense parameters: gather them around a save or load."""
    if engine is None or engine.zero_optimization_stage() != 3:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=0)


def save_checkpoint(run_dir: str, step: int, model, optimizer, engine=None, meta: dict | None = None,
                    keep: int = 2) -> str:
    """Collective: every rank calls it. Returns the final checkpoint path."""
    def write_state(url: str) -> None:
        fs, path = _fs(url)
        with _gathered(engine):
            state = {"model": model.state_dict(), "optim": optimizer.state_dict()}
            dcp.save(state, storage_writer=FsspecWriter(url, sync_files=is_local_fs(fs)))
        if engine is not None:
            if not is_local_fs(fs):
                raise CheckpointError(f"DeepSpeed writes its optimizer state to local paths only, not {run_dir}")
            engine.save_checkpoint(posixpath.join(path, "deepspeed"), tag="state")

    return write_checkpoint(run_dir, step, write_state, meta, keep)


def write_checkpoint(run_dir: str, step: int, write_state: Callable[[str], None], meta: dict | None = None,
                     keep: int = 2) -> str:
    """Collective: ``write_state(url)`` writes every rank's files into the checkpoint's directory;
    then rank 0 adds ``meta.json`` (step, world size, ``meta``) and publishes it as the latest,
    keeping the newest ``keep``. Returns the final checkpoint path."""
    root = checkpoint_root(run_dir)
    fs, root_path = _fs(root)
    name = f"step-{step:09d}"
    local = is_local_fs(fs)
    write_url = posixpath.join(root, f".tmp-{name}" if local else name)
    _, write_path = _fs(write_url)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        if fs.exists(write_path):
            fs.rm(write_path, recursive=True)
        fs.makedirs(write_path, exist_ok=True)
    barrier()
    write_state(write_url)
    barrier()
    if rank == 0:
        info = {"step": step, "world_size": dist.get_world_size() if dist.is_initialized() else 1}
        info.update(meta or {})
        with fs.open(posixpath.join(write_path, "meta.json"), "w") as fh:
            json.dump(info, fh)
        final_path = posixpath.join(root_path, name)
        if local:
            if fs.exists(final_path):
                fs.rm(final_path, recursive=True)
            fs.mv(write_path, final_path, recursive=True)
        _write_latest(fs, root_path, name, local)
        _prune(fs, root_path, keep)
    barrier()
    return posixpath.join(root, name)


def _write_latest(fs, root_path: str, name: str, local: bool) -> None:
    pointer = posixpath.join(root_path, LATEST)
    if local:
        tmp = pointer + ".tmp"
        fs.pipe_file(tmp, name.encode())
        fs.mv(tmp, pointer)
    else:
        fs.pipe_file(pointer, name.encode())


def _prune(fs, root_path: str, keep: int) -> None:
    if keep <= 0:
        return
    steps = sorted(p for p in fs.ls(root_path, detail=False) if posixpath.basename(p).startswith("step-"))
    for old in steps[:-keep]:
        fs.rm(old, recursive=True)


def read_meta(path: str) -> dict:
    fs, p = _fs(path)
    meta_path = posixpath.join(p, "meta.json")
    if not fs.exists(meta_path):
        raise CheckpointError(f"checkpoint {path} is incomplete or not a distrec checkpoint (no meta.json)")
    return json.loads(fs.cat_file(meta_path))


def load_checkpoint(path: str, model, optimizer=None, engine=None) -> dict:
    """Load weights (resharding as needed) and, when possible, optimizer state. Collective.

    Optimizer state cannot follow a changed column split of a table (its momentum shapes
    differ); then the weights are loaded alone and a warning says so. DeepSpeed's optimizer state
    is per rank: it is restored only on the same world size.
    """
    meta = read_meta(path)
    if optimizer is not None and hasattr(optimizer, "init_state"):
        # Optimizer state is lazy and DCP loads into existing tensors; the dummy step this takes
        # may touch weights (weight decay), so it runs before the weights are loaded.
        optimizer.init_state()
    with _gathered(engine):
        model_state = model.state_dict()
        dcp.load({"model": model_state}, storage_reader=FsspecReader(path))
        model.load_state_dict(model_state)
    meta["optimizer_restored"] = False
    if optimizer is not None:
        meta["optimizer_restored"] = _load_optimizer(path, optimizer)
    if engine is not None and meta["optimizer_restored"]:
        world = dist.get_world_size() if dist.is_initialized() else 1
        if meta.get("world_size") == world:
            engine.load_checkpoint(posixpath.join(_fs(path)[1], "deepspeed"), tag="state",
                                   load_module_strict=False, load_module_only=False)
        else:
            meta["optimizer_restored"] = False
            _warn_once(f"checkpoint {path} was saved by {meta.get('world_size')} workers, this run has "
                       f"{world}: DeepSpeed optimizer state is per rank, loading model weights only")
    return meta


def _load_optimizer(path: str, optimizer) -> bool:
    optim_state = optimizer.state_dict()
    try:
        dcp.load({"optim": optim_state}, storage_reader=FsspecReader(path))
        optimizer.load_state_dict(optim_state)
        return True
    except (Exception, dcp.api.CheckpointException) as exc:  # noqa: BLE001 - DCP wraps shape mismatches
        # (CheckpointException derives from BaseException)
        _warn_once(
            f"optimizer state in {path} does not fit this sharding plan ({str(exc).splitlines()[0][:200]}); "
            "loaded model weights only, optimizer state starts fresh"
        )
        return False


def _warn_once(message: str) -> None:
    if not dist.is_initialized() or dist.get_rank() == 0:
        log.warning(message)
