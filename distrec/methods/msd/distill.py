"""``distrec msd distill``: the teacher's knowledge distilled into the student.

For every entity with knowledge, the student reads the entity's raw input (title | year |
genres; a user's profile and liked titles) and learns its knowledge text: by feature
distillation into an encoder (ours) or token by token into a causal LM (the paper's); see
``distill_objectives``. The student trains under a DeepSpeed engine (ZeRO stage
``distill.zero_stage``) on every worker, each worker taking its share of the entities; rank 0
writes the student as a Hugging Face directory (``distill.output``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math

import torch
import torch.distributed as dist

from distrec.errors import ConfigError, DataError
from distrec.methods.msd.distill_objectives import OBJECTIVES
from distrec.methods.msd.entities import load_catalog
from distrec.methods.msd.knowledge import knowledge_texts
from distrec.methods.msd.student import save_student
from distrec.train.distributed import barrier, seed_everything, worker_info
from distrec.train.progress import MetricsSink, ProgressMeter, configure_logging

log = logging.getLogger("distrec")


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


def _mean_over_ranks(values: torch.Tensor) -> float:
    t = torch.stack([values.sum(), torch.tensor(float(values.numel()))]).double()
    if dist.is_initialized():
        dist.all_reduce(t)
    return float(t[0] / t[1].clamp(min=1))


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


def distill_worker(cfg, in_ray: bool = False) -> dict:
    import deepspeed

    configure_logging()
    dcfg, scfg = cfg.method.distill, cfg.method.student
    objective_class = OBJECTIVES.get((dcfg.mode, scfg.kind))
    if objective_class is None:
        raise ConfigError(f"method.distill.mode={dcfg.mode} with method.student.kind={scfg.kind}: expected "
                          f"mode=feature with kind=encoder, or mode=token with kind=causal")
    worker = worker_info(cfg.trainer.use_gpu, cfg.trainer.cpus_per_worker)
    seed_everything(cfg.run.seed)
    raws, texts = distill_pairs(cfg)
    # equal step counts on every rank: each takes every world-th entity, wrapping around
    per_rank = math.ceil(len(raws) / worker.world_size)
    mine = [(worker.rank + i * worker.world_size) % len(raws) for i in range(per_rank)]
    objective = objective_class(scfg, dcfg, [raws[i] for i in mine], [texts[i] for i in mine])
    student = objective.module
    engine, _, _, _ = deepspeed.initialize(
        model=student, model_parameters=[p for p in student.parameters() if p.requires_grad],
        config=_deepspeed_config(dcfg, worker.world_size), dist_init_required=False,
    )

    def evaluate() -> float:
        with torch.no_grad():
            per_entity = torch.cat([objective.per_entity(engine, torch.arange(i, min(i + 64, per_rank)))
                                    for i in range(0, per_rank, 64)])
        return _mean_over_ranks(per_entity)

    steps_per_epoch = math.ceil(per_rank / dcfg.batch_size)
    total = steps_per_epoch * dcfg.epochs if dcfg.max_steps < 0 else min(dcfg.max_steps, steps_per_epoch * dcfg.epochs)
    sink = MetricsSink(_run_dir(cfg), worker.is_chief, cfg.metrics.tensorboard)
    progress = ProgressMeter(total, dcfg.batch_size * worker.world_size, dcfg.log_every, worker.is_chief)
    loss_before = evaluate()
    step, losses = 0, []
    generator = torch.Generator().manual_seed(cfg.run.seed)
    engine.train()
    for epoch in range(dcfg.epochs):
        order = torch.randperm(per_rank, generator=generator)
        for b in range(steps_per_epoch):
            if step >= total:
                break
            loss = objective.loss(engine, order[b * dcfg.batch_size:(b + 1) * dcfg.batch_size])
            engine.backward(loss)
            engine.step()
            step += 1
            logged = step % progress.log_every == 0 or step == total
            mean = _mean_over_ranks(loss.detach().reshape(1)) if logged else None
            if mean is not None:
                losses.append(mean)
                sink.write({"distill_loss": mean}, step)
            progress.step(step, mean, epoch)
    loss_after = evaluate()
    metrics = {"mode": dcfg.mode, "distill_loss_before": loss_before, "distill_loss_after": loss_after,
               "steps": step, "entities": len(raws), "train_losses": losses}
    with torch.no_grad():  # a probe the tests compare with the reloaded checkpoint
        probe = {"texts": [raws[i] for i in mine[:4]], "vectors": objective.probe(engine, 4)}
    sink.write({"distill_loss_before": loss_before, "distill_loss_after": loss_after}, step)
    _save(engine, objective, dcfg.output, worker.is_chief, metrics)
    barrier()
    sink.close()
    if worker.is_chief:
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


def _run_dir(cfg) -> str:
    from distrec.config.load import run_dir

    return run_dir(cfg)
