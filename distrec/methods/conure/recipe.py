"""Conure recipe: one backbone learns tasks T1, T2, ... in turn; old tasks never change.

Runs in every worker (Ray Train or spawned). For each task not yet in the run's registry
(``conure_state.json``), in config order:

  build the model with the heads of the tasks so far → load the previous stage's checkpoint
  (weights only; keys of the new task are fresh) → (a) train: free conv weights, the new head
  (and for T1 the embeddings and LayerNorms) → (b) prune: per conv layer keep the largest share of
  the free weights as m_k → (c) retrain with kernel stopgrad(W⊙F_k) + W⊙m_k → checkpoint the
  stage → evaluate every learned task with its masks → record metrics and probe outputs.

A later invocation with more tasks in ``method.tasks`` continues from the registry: old tasks
are not retrained. Baselines (``method.strategy``): ``finetune_all`` trains everything on each
task (no masks: old tasks drift), ``finetune_copy`` keeps one model per task, each a copy of T1's
model with everything fine-tuned, ``separate`` trains a fresh backbone per task alone (no
transfer). Item-rec negatives are ranked by the task's training target counts.

Each phase gets a fresh dense optimizer (ours); frozen conv entries get zero gradient
(stopgrad) and are written back after every optimizer step (``FrozenEntryGuard``), so decoupled
weight decay cannot move them; wholly frozen tensors have requires_grad=False and no gradient.
"""

from __future__ import annotations

import functools
import logging
import posixpath

import torch
import torch.distributed as dist

from distrec.config.load import run_dir
from distrec.data.schema import FeatureSchema
from distrec.errors import CheckpointError, ConfigError
from distrec.methods.conure.config import one_model_per_task
from distrec.methods.conure.masks import FrozenEntryGuard, pack_bits, prune_free_weights
from distrec.methods.conure.model import ConureDense, ConureModel, TaskSpec
from distrec.methods.conure.tasks import (
    ConureState,
    ResolvedTask,
    resolve_tasks,
    target_counts,
    task_config,
)
from distrec.metrics import RankingMetricAccumulator, all_reduce_sum
from distrec.sparse.tables import build_embeddings, embedding_configs
from distrec.storage import atomic_open, filesystem
from distrec.train.checkpoint import save_checkpoint
from distrec.train.distributed import seed_everything, worker_info
from distrec.train.loop import LoopSchedule, TrainLoop, open_feed
from distrec.train.pipeline import DistrecTrainPipeline
from distrec.train.progress import ProgressMeter, configure_logging
from distrec.train.session import TrainSession

log = logging.getLogger("distrec")


def build_model(cfg, schema: FeatureSchema, tasks: list[TaskSpec] | None = None) -> ConureModel:
    """The model with the heads of ``tasks`` (default: every configured task), tables on meta."""
    if tasks is None:
        tasks = [t.spec for t in resolve_tasks(cfg)]
    item = schema.sequence[0]
    sparse = build_embeddings(embedding_configs(schema, {item.name: cfg.model.channels}))
    return ConureModel(sparse, ConureDense(cfg.model, cfg.method, tasks, item.max_len), item.name)


class GuardedPipeline(DistrecTrainPipeline):
    """Writes frozen conv entries back after every optimizer step."""

    def __init__(self, *args, guard: FrozenEntryGuard | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard = guard

    def _optimizer_step(self) -> None:
        super()._optimizer_step()
        if self.guard is not None:
            self.guard.restore()


# --- per-task set-up ------------------------------------------------------------------------------


def set_trainable(model: ConureModel, strategy: str, local: int) -> None:
    """Before sharding (DDP registers only trainable parameters): conv weights and the new head
    train; embeddings and LayerNorms only for T1 (Conure) or always (baselines)."""
    dense = model.dense
    dense.requires_grad_(False)
    for conv in dense.backbone.convs():
        conv.weight.requires_grad_(True)
    shared = strategy != "conure" or local == 1
    for norm in dense.backbone.norms():
        norm.requires_grad_(shared)
    dense.heads[dense.tasks[local - 1].name].requires_grad_(True)
    dense.freeze_embeddings = not shared


def load_weights(path: str, dmp) -> None:
    """Load the model weights a checkpoint holds; keys it lacks (a new task's head and mask)
    keep their fresh values. Collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader

    try:
        saved = set(FsspecReader(path).read_metadata().state_dict_metadata)
    except FileNotFoundError:
        raise CheckpointError(f"Conure stage checkpoint {path} is missing") from None
    state = dmp.state_dict()
    wanted = {k: v for k, v in state.items() if f"model.{k}" in saved}
    dcp.load({"model": wanted}, storage_reader=FsspecReader(path))
    dmp.load_state_dict(wanted, strict=False)
    for conv in dmp.module.dense.backbone.convs():
        conv.invalidate()


def prune_task(dense: ConureDense, local: int, ratio: float) -> dict:
    """m_local for every conv layer (rank 0's choice, broadcast); returns kept/free counts."""
    kept = free = 0
    with torch.no_grad():
        for conv in dense.backbone.convs():
            frozen = conv.union(local - 1)
            packed = pack_bits(prune_free_weights(conv.weight, frozen, ratio))
            if dist.is_initialized():
                dist.broadcast(packed, src=0)
            getattr(conv, f"mask_{local}").copy_(packed)
            conv.invalidate()
            kept += int(conv.mask(local).sum())
            free += int((~frozen).sum())
    return {"kept": kept, "free_before": free}


def run_phase(session: TrainSession, feed, local: int, phase: str, epochs: int, guard) -> None:
    """One phase of a task on the engine's loop: a fresh optimizer, ``epochs`` epochs (at most
    ``method.max_steps_per_phase`` steps), no evaluation; the task saves its checkpoint at the end."""
    cfg = session.cfg
    dense = session.dmp.module.dense
    dense.set_mode(local, phase)
    session.begin_phase(functools.partial(GuardedPipeline, guard=guard))
    step0, cap = session.state.step, cfg.method.max_steps_per_phase
    schedule = LoopSchedule(epochs=epochs, max_steps=step0 + cap if cap >= 0 else -1, first_step=step0,
                            checkpoints=False)
    loop = TrainLoop(session, feed, schedule)
    progress = ProgressMeter(loop.total_steps, cfg.data.batch_size * session.worker.world_size,
                             cfg.trainer.log_every, enabled=session.worker.is_chief)
    progress.skip_to(step0)
    session.info(f"{dense.tasks[local - 1].name}: phase {phase}, {loop.total_steps - step0} steps")
    loop.run(progress)


# --- evaluation -----------------------------------------------------------------------------------


def evaluate_task(session: TrainSession, feed, kind: str, ks, probe_rows: int) -> tuple[dict, torch.Tensor]:
    """Metrics of the active task over ``feed`` (exact over ranks) and this rank's probe: the
    scores of the first ``probe_rows`` rows of its first batch."""
    ranking = RankingMetricAccumulator(ks)
    correct = torch.zeros(2, dtype=torch.float64)
    probe: list[torch.Tensor] = []

    def update(out: dict) -> None:
        if not probe:
            probe.append(out["scores"][:probe_rows].clone())
        if kind == "profile":
            w = out["weights"].to(torch.float64)
            hit = (out["scores"].argmax(1) == out["targets"]).to(torch.float64)
            correct.add_(torch.stack([(hit * w).sum(), w.sum()]).cpu())
        else:
            ranking.update(out["scores"], out["targets"], weights=out["weights"])

    session.evaluate(feed, update)
    if kind == "profile":
        total = all_reduce_sum(correct)
        return {"accuracy": float(total[0] / total[1].clamp(min=1)), "num_rows": int(total[1])}, probe[0]
    return ranking.compute(), probe[0]


def evaluate_learned(cfg, session, tasks: list[ResolvedTask], locals_: dict[str, int], stage: int,
                     out: str) -> dict:
    """Metrics of every task in ``locals_`` (name -> index in this model) on method.eval_split."""
    dense = session.dmp.module.dense
    phase = "infer" if cfg.method.strategy == "conure" else "plain"
    results = {}
    for task in tasks:
        if task.name not in locals_:
            continue
        dense.set_mode(locals_[task.name], phase)
        feed = open_feed(cfg, task.schema, session.worker, task.split(cfg.method.eval_split), train=False)
        metrics, probe = evaluate_task(session, feed, task.spec.kind, cfg.metrics.ks, cfg.method.probe_rows)
        results[task.name] = metrics
        if session.worker.is_chief:
            save_probe(out, stage, task.name, probe)
    return results


def probe_path(out: str, stage: int, task: str) -> str:
    return posixpath.join(out, "probes", f"stage-{stage:02d}", f"{task}.pt")


def save_probe(out: str, stage: int, task: str, scores: torch.Tensor) -> None:
    fs, path = filesystem(probe_path(out, stage, task))
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with atomic_open(path, fs, "wb") as fh:
        torch.save(scores.cpu(), fh)


# --- parameter counts -----------------------------------------------------------------------------


def parameter_counts(model: ConureModel) -> dict:
    dense = model.dense
    return {
        "embedding": sum(p.numel() for p in model.sparse.parameters()),
        "backbone": sum(p.numel() for p in dense.backbone.parameters()),
        "conv_weights": sum(c.weight.numel() for c in dense.backbone.convs()),
        "heads": {name: sum(p.numel() for p in head.parameters()) for name, head in dense.heads.items()},
    }


# --- the task loop --------------------------------------------------------------------------------


def learn_task(cfg, worker, tasks: list[ResolvedTask], k: int, state: ConureState, out: str,
               in_ray: bool) -> None:
    task = tasks[k - 1]
    strategy = cfg.method.strategy
    seed_everything(cfg.run.seed + k)
    specs = [task.spec] if one_model_per_task(strategy) else [t.spec for t in tasks[:k]]
    local = len(specs)
    model = build_model(cfg, task.schema, specs)
    counts = parameter_counts(model)
    set_trainable(model, strategy, local)
    task_cfg = task_config(cfg, task)
    session = TrainSession(task_cfg, model, worker, out, in_ray)
    start_from = initial_checkpoint(strategy, state)
    if start_from:
        load_weights(start_from, session.dmp)
        session.info(f"{task.name}: starts from {start_from}")
    dense = session.dmp.module.dense
    if task.spec.kind == "item_rec":
        dense.heads[task.name].sampler.set_counts(target_counts(task, cfg.data.s3_endpoint_url))
    train = open_feed(task_cfg, task.schema, worker, task.split("train"), train=True)

    masks = None
    if strategy == "conure":
        guard = FrozenEntryGuard(dense.backbone.convs(), local - 1)
        run_phase(session, train, local, "train", task.train_epochs, guard)
        masks = prune_task(dense, local, task.prune_ratio)
        if local == 1 and not cfg.method.t1_retrain_trains_shared:
            dense.freeze_embeddings = True
            guard.freeze_whole([p for norm in dense.backbone.norms() for p in norm.parameters()])
        run_phase(session, train, local, "retrain", task.retrain_epochs, guard)
    else:
        run_phase(session, train, local, "plain", task.train_epochs + task.retrain_epochs, None)

    stage_dir = posixpath.join(out, "stages", f"{k:02d}-{task.name}")
    path = save_checkpoint(stage_dir, session.state.step, session.dmp, session.opt.optimizer, None,
                           meta={"task": task.name, "stage": k, "strategy": strategy}, keep=1)
    if one_model_per_task(strategy):
        locals_ = {task.name: 1}
        metrics = {name: m for name, m in state.latest_metrics().items()}
    else:
        locals_ = {t.name: i + 1 for i, t in enumerate(tasks[:k])}
        metrics = {}
    metrics.update(evaluate_learned(cfg, session, tasks, locals_, k, out))

    state.tasks.append({"name": task.name, "kind": task.spec.kind, "num_outputs": task.spec.num_outputs,
                        "data": task.data, "checkpoint": path, "prune_ratio": task.prune_ratio,
                        "masks": masks, "params": counts})
    state.history.append({"stage": k, "task": task.name, "metrics": metrics})
    state.params = stage_params(state)
    if worker.is_chief:
        state.save(out)
    session.report({f"{name}/{key}": v for name, m in metrics.items() for key, v in m.items()
                    if isinstance(v, (int, float))} | {"stage": k}, path)
    session.info(f"stage {k} ({task.name}) done: " + ", ".join(
        f"{name} {main_metric(m):.4f}" for name, m in metrics.items()))
    session.close()


def initial_checkpoint(strategy: str, state: ConureState) -> str | None:
    """Where task k's weights start: the last stage (one model for all tasks), T1's stage
    (``finetune_copy``) or nowhere (``separate``, and T1 itself)."""
    if not state.tasks or strategy == "separate":
        return None
    if strategy == "finetune_copy":
        return state.tasks[0]["checkpoint"]
    return state.tasks[-1]["checkpoint"]


def main_metric(metrics: dict) -> float:
    return metrics.get("mrr@5", metrics.get("accuracy", float("nan")))


def stage_params(state: ConureState) -> dict:
    """Parameters of everything learned so far: one model (conure, finetune_all) or one per task."""
    last = state.tasks[-1]["params"]
    if one_model_per_task(state.strategy):
        total = sum(t["params"]["embedding"] + t["params"]["backbone"] + sum(t["params"]["heads"].values())
                    for t in state.tasks)
    else:
        total = last["embedding"] + last["backbone"] + sum(last["heads"].values())
    out = {"total": total, "embedding": last["embedding"], "backbone": last["backbone"]}
    if state.strategy == "conure":
        out["conv_weights_per_task"] = {t["name"]: t["masks"]["kept"] for t in state.tasks}
        out["conv_weights_free"] = last["conv_weights"] - sum(out["conv_weights_per_task"].values())
    return out


def train_worker(cfg, in_ray: bool = False) -> dict:
    configure_logging()
    if cfg.dense.backend != "ddp":
        raise ConfigError("conure: dense.backend must be 'ddp' (frozen entries are restored after "
                          f"each torch optimizer step), got {cfg.dense.backend!r}")
    worker = worker_info(cfg.trainer.use_gpu, cfg.trainer.cpus_per_worker)
    tasks = resolve_tasks(cfg)
    out = run_dir(cfg)
    state = ConureState.load(out, cfg.method.strategy)
    state.check_prefix(tasks)
    if len(state.tasks) == len(tasks) and worker.is_chief:
        log.info("every configured task is already learned in %s: nothing to train", out)
    for k in range(len(state.tasks) + 1, len(tasks) + 1):
        learn_task(cfg, worker, tasks, k, state, out, in_ray)
    return {f"{name}/{key}": v for name, m in state.latest_metrics().items() for key, v in m.items()}
