"""Worker functions the engine tests run in spawned gloo processes (importable by the children)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from distrec.data.reader import ParquetStreamReader, plan_units
from distrec.data.schema import FeatureSchema
from distrec.methods.ctr.recipe import build_model
from distrec.storage import list_parquet_files
from distrec.train.checkpoint import load_checkpoint
from distrec.train.distributed import seed_everything, worker_info
from distrec.train.session import TrainSession


def global_batches(cfg_dict: dict, global_batch: int) -> list:
    """Every row of the training split, in file order, as batches of ``global_batch`` rows."""
    cfg = OmegaConf.create(cfg_dict)
    schema = FeatureSchema.load(cfg.data.schema)
    units = plan_units(list_parquet_files(cfg.data.train))
    return list(ParquetStreamReader(schema, units, global_batch))


def local_slice(batch, rank: int, world: int):
    """Rows [rank*b, (rank+1)*b) of a global batch: rank r's share of the same global batch."""
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from distrec.data.batch import RecBatch

    b = batch.batch_size // world
    lo, hi = rank * b, (rank + 1) * b
    per_key = batch.sparse.to_dict()
    keys = batch.sparse.keys()
    values, lengths = [], []
    for key in keys:
        jt = per_key[key]
        offsets = jt.offsets()
        values.append(jt.values()[offsets[lo]:offsets[hi]])
        lengths.append(jt.lengths()[lo:hi])
    sparse = KeyedJaggedTensor.from_lengths_sync(keys, torch.cat(values), torch.cat(lengths))
    return RecBatch(batch.dense[lo:hi], sparse, batch.labels[lo:hi], batch.weights[lo:hi], batch.group_ids[lo:hi])


def make_session(cfg, run_dir: str) -> TrainSession:
    worker = worker_info(False)
    seed_everything(cfg.run.seed)
    schema = FeatureSchema.load(cfg.data.schema)
    return TrainSession(cfg, build_model(cfg, schema), worker, run_dir, in_ray=False)


def train_on_global_batches(rank: int, cfg_dict: dict, run_dir: str, global_batch: int,
                            save_initial: bool) -> dict:
    """Train over the same global batches whatever the world size; returns per-step global losses."""
    cfg = OmegaConf.create(cfg_dict)
    session = make_session(cfg, run_dir)
    session.restore()
    world = dist.get_world_size()
    initial = session.checkpoint({}) if save_initial else None
    batches = [local_slice(b, rank, world) for b in global_batches(cfg_dict, global_batch)]
    losses = []
    it = iter(batches)
    for _ in batches:
        outputs = session.pipeline.progress(it)
        losses.append(session.mean_loss(outputs))
        session.state.step += 1
    final = session.checkpoint({})
    session.close()
    return {"losses": losses, "initial": initial, "final": final}


def full_state(rank: int, cfg_dict: dict, checkpoints: list[str]) -> list[dict]:
    """Each checkpoint loaded into a fresh model on this world size, as full CPU tensors."""
    cfg = OmegaConf.create(cfg_dict)
    states = []
    for path in checkpoints:
        session = make_session(cfg, "/nonexistent")
        load_checkpoint(path, session.dmp)
        states.append(gather_full_state(session.dmp))
    return states


def gather_full_state(dmp) -> dict:
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    out = {}
    for key, value in dmp.state_dict().items():
        if isinstance(value, ShardedTensor):
            full = torch.zeros(value.size()) if dist.get_rank() == 0 else None
            value.gather(dst=0, out=full)
            out[key] = full
        else:
            out[key] = value.detach().clone()
    return out


def predict(rank: int, cfg_dict: dict, checkpoint: str, global_batch: int) -> list:
    """Predictions of a checkpoint on the global batches (rank 0 returns them all, in order)."""
    cfg = OmegaConf.create(cfg_dict)
    session = make_session(cfg, "/nonexistent")
    load_checkpoint(checkpoint, session.dmp)
    session.dmp.eval()
    world = dist.get_world_size()
    preds = []
    with torch.no_grad():
        for batch in global_batches(cfg_dict, global_batch):
            _, out = session.dmp(local_slice(batch, rank, world))
            gathered = [torch.zeros_like(out["preds"]) for _ in range(world)]
            dist.all_gather(gathered, out["preds"])
            preds.append(torch.cat(gathered))
    return torch.cat(preds).tolist() if rank == 0 else []


def train_steps(rank: int, cfg_dict: dict, run_dir: str, global_batch: int, steps: int) -> dict:
    """Resume (if configured), train ``steps`` more global batches, checkpoint; returns losses."""
    cfg = OmegaConf.create(cfg_dict)
    session = make_session(cfg, run_dir)
    session.restore()
    world = dist.get_world_size()
    batches = [local_slice(b, rank, world) for b in global_batches(cfg_dict, global_batch)]
    start = session.state.step
    it = iter(batches[start:start + steps])
    losses = []
    for _ in range(steps):
        outputs = session.pipeline.progress(it)
        losses.append(session.mean_loss(outputs))
        session.state.step += 1
        session.state.batch_in_epoch += 1
    path = session.checkpoint({})
    session.close()
    return {"losses": losses, "checkpoint": path, "start": start}


def failing_checkpoint(rank: int, cfg_dict: dict, run_dir: str) -> dict:
    """Save one good checkpoint, then one whose DCP write dies midway; report what is visible."""
    import distrec.train.checkpoint as ckpt

    cfg = OmegaConf.create(cfg_dict)
    session = make_session(cfg, run_dir)
    good = session.checkpoint({})
    real_save = ckpt.dcp.save

    def dying_save(state, storage_writer):
        real_save(state, storage_writer=storage_writer)
        raise OSError("disk full (simulated)")

    ckpt.dcp.save = dying_save
    session.state.step = 7
    error = None
    try:
        session.checkpoint({})
    except OSError as exc:
        error = str(exc)
    finally:
        ckpt.dcp.save = real_save
    return {"good": good, "latest": ckpt.latest_checkpoint(run_dir), "error": error}


def load_with_optimizer(rank: int, cfg_dict: dict, checkpoint: str) -> bool:
    """Load weights and optimizer state; True when the optimizer state could be restored."""
    cfg = OmegaConf.create(cfg_dict)
    session = make_session(cfg, "/nonexistent")
    meta = load_checkpoint(checkpoint, session.dmp, session.opt.optimizer)
    return meta["optimizer_restored"]


def train_with_poisoned_batch(rank: int, cfg_dict: dict, global_batch: int, poisoned_step: int) -> dict:
    """Train 3 global batches, the ``poisoned_step``-th with a NaN dense feature on rank 0."""
    from distrec.train.pipeline import NonFiniteLossError

    cfg = OmegaConf.create(cfg_dict)
    session = make_session(cfg, "/nonexistent")
    world = dist.get_world_size()
    batches = [local_slice(b, rank, world) for b in global_batches(cfg_dict, global_batch)[:3]]
    if rank == 0:
        batches[poisoned_step].dense[0, 0] = float("nan")
    snapshots, it = [], iter(batches)
    try:
        for _ in batches:
            session.pipeline.progress(it)
            snapshots.append({k: v.detach().clone() for k, v in session.dmp.module.dense.state_dict().items()})
    except NonFiniteLossError as exc:
        return {"error": str(exc), "steps": len(snapshots)}
    unchanged = [all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(snapshots, snapshots[1:])]
    return {"error": None, "skipped": session.pipeline.skipped_steps, "unchanged_after": unchanged}


def loop_with_slow_evaluation(rank: int, cfg_dict: dict, sleep_s: float) -> dict:
    """The engine's loop on the CTR recipe, each evaluation slowed by ``sleep_s`` (the fair clock
    must not count it as training)."""
    import time

    from distrec.methods.ctr.recipe import build_model, evaluate
    from distrec.train.loop import train_loop

    def slow_evaluate(session, feed, cfg, schema):
        time.sleep(sleep_s)
        # "countdown" only gets worse: a known metric for early stopping to act on
        return {**evaluate(session, feed, cfg, schema), "countdown": -session.state.step}

    return train_loop(OmegaConf.create(cfg_dict), False, build_model, slow_evaluate)


def ctr_worker_counting_attempts(cfg, in_ray: bool = False) -> dict:
    """The ctr recipe's worker, first appending this rank to ``<run dir>/attempts``: one line per
    rank each time Ray Train starts the worker group."""
    import os

    from distrec.config.load import run_dir
    from distrec.methods.ctr.recipe import train_worker

    with open(os.path.join(run_dir(cfg), "attempts"), "a") as fh:
        fh.write(f"{dist.get_rank()}\n")
    return train_worker(cfg, in_ray)
