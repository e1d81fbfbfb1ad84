"""``distrec msd distill``: the teacher's knowledge distilled into the student.

For every entity with knowledge, the student reads the entity's raw input (title | year |
genres; a user's profile and liked titles) and learns its knowledge text: by feature
distillation into an encoder (ours) or token by token into a causal LM (the paper's); see
``distill_objectives``. The student trains under a DeepSpeed engine (ZeRO stage
``distill.zero_stage``) on every worker, each worker taking its share of the entities, on the
engine's one loop (``TrainLoop`` driving a ``DeepSpeedSession``): every epoch visits a rank's
entities in a seeded shuffle; the evaluation is the mean per-entity distillation loss (before
training, every ``distill.eval_every`` steps, after the last); checkpoints go to
``<run_dir>/distill/checkpoints`` every ``distill.checkpoint_every`` steps and after the last, and a
rerun (or Ray restarting the workers) resumes from the newest, ending with the student an
uninterrupted run ends with. Rank 0 writes the student as a Hugging Face directory
(``distill.output``, with ``distill_metrics.json``) and the loop's ``summary.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import posixpath
import time
from typing import Iterator

import torch

from distrec.config.load import run_dir
from distrec.errors import ConfigError, DataError
from distrec.methods.msd.distill_objectives import OBJECTIVES
from distrec.methods.msd.entities import load_catalog
from distrec.methods.msd.knowledge import knowledge_texts
from distrec.methods.msd.student import save_student
from distrec.train.deepspeed_session import DeepSpeedSession
from distrec.train.distributed import (
    barrier,
    mean_over_ranks,
    seed_everything,
    worker_info,
)
from distrec.train.loop import LoopSchedule, TrainLoop, write_summary
from distrec.train.progress import ProgressMeter, configure_logging

log = logging.getLogger("distrec")
CHECKPOINT_DIR = "distill"  # in the run directory: checkpoints/ (and best/) of the distillation


def distill_pairs(cfg) -> tuple[list[str], list[str]]:
    """(raw inputs, knowledge texts) of every entity that has knowledge, in (level, id) order."""
    catalog = load_catalog(cfg.method.entities, cfg.data.train)
    knowledge = knowledge_texts(cfg.method.knowledge.output)
    if not knowledge:
        raise DataError(f"no knowledge records in {cfg.method.knowledge.output}: run "
                        f"`distrec msd knowledge CONFIG` first (method.knowledge.output)")
    raws, texts = [], []
    for (level, entity_id), text in sorted(knowledge.items()):
        entity = catalog.level(level).get(entity_id)
        if entity is not None:
            raws.append(entity.raw)
            texts.append(text)
    return raws, texts


def _deepspeed_config(dcfg, world: int) -> dict:
    if dcfg.zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"method.distill.zero_stage: expected 0-3, got {dcfg.zero_stage}")
    return {
        "train_micro_batch_size_per_gpu": dcfg.batch_size,
        "train_batch_size": dcfg.batch_size * world,
        "gradient_accumulation_steps": 1,
        "optimizer": {"type": "AdamW", "params": {"lr": dcfg.lr, "torch_adam": True}},
        "zero_optimization": {"stage": dcfg.zero_stage},
        "steps_per_print": 10**9,
    }


def rank_share(entities: int, worker) -> list[int]:
    """This rank's entity positions: every world-th, wrapping around so that every rank has as many
    (equal step counts on every rank)."""
    per_rank = math.ceil(entities / worker.world_size)
    return [(worker.rank + i * worker.world_size) % entities for i in range(per_rank)]


class EntityBatches:
    """A rank's entities (positions ``0..count-1``) in batches, in a fresh seeded order each epoch.
    Epoch e's order is the (e+1)-th permutation drawn from one generator seeded with ``seed``, so a
    resumed run finds the order of an uninterrupted one."""

    def __init__(self, count: int, batch_size: int, seed: int) -> None:
        self.count, self.batch_size, self.seed = count, batch_size, seed

    def steps(self, epoch: int) -> int:
        return math.ceil(self.count / self.batch_size)

    def batches(self, epoch: int, start_batch: int = 0) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(epoch):
            torch.randperm(self.count, generator=generator)
        order = torch.randperm(self.count, generator=generator)
        for b in range(start_batch, self.steps(epoch)):
            yield order[b * self.batch_size:(b + 1) * self.batch_size]


def trajectory_inputs(cfg, world_size: int, raws: list[str], texts: list[str]) -> dict:
    """What decides the student's training, which a checkpoint must share to be resumed; the
    schedule's length, logging and output may change between runs."""
    from omegaconf import OmegaConf

    schedule = {"epochs", "max_steps", "log_every", "eval_every", "checkpoint_every", "output"}
    distill = OmegaConf.to_container(cfg.method.distill, resolve=True, enum_to_str=True)
    return {"distill": {k: v for k, v in distill.items() if k not in schedule},
            "student": OmegaConf.to_container(cfg.method.student, resolve=True, enum_to_str=True),
            "seed": cfg.run.seed, "world_size": world_size,
            "knowledge_sha256": hashlib.sha256(json.dumps([raws, texts]).encode()).hexdigest()}


@torch.no_grad()
def mean_entity_loss(objective, engine, entities: int, batch_size: int = 64) -> float:
    """The evaluation: the distillation loss of each entity, averaged over every rank's entities."""
    per_entity = [objective.per_entity(engine, torch.arange(i, min(i + batch_size, entities)))
                  for i in range(0, entities, batch_size)]
    return mean_over_ranks(torch.cat(per_entity))


def distill_worker(cfg, in_ray: bool = False) -> dict:
    import deepspeed

    configure_logging()
    wall_start = time.perf_counter()
    dcfg, scfg = cfg.method.distill, cfg.method.student
    objective_class = OBJECTIVES.get((dcfg.mode, scfg.kind))
    if objective_class is None:
        raise ConfigError(f"method.distill.mode={dcfg.mode} with method.student.kind={scfg.kind}: expected "
                          f"mode=feature with kind=encoder, or mode=token with kind=causal")
    worker = worker_info(cfg.trainer.use_gpu, cfg.trainer.cpus_per_worker)
    seed_everything(cfg.run.seed)
    raws, texts = distill_pairs(cfg)
    mine = rank_share(len(raws), worker)
    objective = objective_class(scfg, dcfg, [raws[i] for i in mine], [texts[i] for i in mine])
    student = objective.module
    engine, _, _, _ = deepspeed.initialize(
        model=student, model_parameters=[p for p in student.parameters() if p.requires_grad],
        config=_deepspeed_config(dcfg, worker.world_size), dist_init_required=False,
    )
    out = run_dir(cfg)
    session = DeepSpeedSession(cfg, engine, lambda idx: objective.loss(engine, idx), worker, out,
                               posixpath.join(out, CHECKPOINT_DIR), trajectory_inputs(cfg, worker.world_size, raws, texts))
    session.restore()
    if not session.can_checkpoint:
        session.info(f"distillation checkpoints need a local or mounted run directory, not {out}: none written")

    def evaluate() -> float:
        return mean_entity_loss(objective, engine, len(mine))

    loss_before = session.resumed_meta.get("distill_loss_before")
    if loss_before is None:
        loss_before = evaluate()
    schedule = LoopSchedule(dcfg.epochs, dcfg.max_steps, dcfg.eval_every, eval_at_epoch_end=False,
                            checkpoint_every=dcfg.checkpoint_every, checkpoints=session.can_checkpoint)
    loop = TrainLoop(session, EntityBatches(len(mine), dcfg.batch_size, cfg.run.seed), schedule,
                     lambda: {"distill_loss": evaluate()}, {"distill_loss_before": loss_before})
    progress = ProgressMeter(loop.total_steps, dcfg.batch_size * worker.world_size, dcfg.log_every, worker.is_chief)
    progress.skip_to(session.state.step)
    loop.run(progress)
    step = session.state.step
    last = loop.state.curve[-1] if loop.state.curve else {}
    # the loop evaluates after its last step; a run resumed after that step restored the evaluation
    loss_after = last["distill_loss"] if last.get("step") == step else evaluate()

    metrics = {"mode": dcfg.mode, "distill_loss_before": loss_before, "distill_loss_after": loss_after,
               "steps": step, "entities": len(raws), "train_losses": session.train_losses}
    with torch.no_grad():  # a probe the tests compare with the reloaded checkpoint
        probe = {"texts": [raws[i] for i in mine[:4]], "vectors": objective.probe(engine, 4)}
    final = {"distill_loss_before": loss_before, "distill_loss_after": loss_after}
    session.report(final)
    _save(engine, objective, dcfg.output, worker.is_chief, metrics)
    barrier()
    session.close()
    if worker.is_chief:
        write_summary(out, {**loop.summary(time.perf_counter() - wall_start), "final": {"step": step, **final}})
        log.info("distillation (%s): loss %.4f -> %.4f over %d steps; student written to %s",
                 dcfg.mode, loss_before, loss_after, step, dcfg.output)
    return {**metrics, "probe": probe}


def _save(engine, objective, out: str, is_chief: bool, metrics: dict) -> None:
    """Rank 0 writes the full student; under ZeRO-3 every rank first gathers the partitions."""
    import deepspeed

    module = engine.module
    params = list(module.parameters())
    gather = engine.zero_optimization_stage() == 3
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None) if gather else contextlib.nullcontext():
        if is_chief:
            save_student(objective.hf_model(module), objective.tokenizer, out,
                         {"distill_metrics.json": json.dumps(metrics, indent=2)})
