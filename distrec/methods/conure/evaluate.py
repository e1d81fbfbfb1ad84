"""Evaluate one learned Conure task from the run's checkpoint (``distrec conure eval``).

Task j is evaluated with masks m_1 … m_j on the newest checkpoint (conure, finetune_all) or on
its own model (separate)."""

from __future__ import annotations

from omegaconf import OmegaConf

from distrec.config.load import run_dir
from distrec.errors import ConfigError
from distrec.methods.conure.config import one_model_per_task
from distrec.methods.conure.recipe import build_model, evaluate_task, load_weights
from distrec.methods.conure.tasks import ConureState, resolve_tasks
from distrec.train.distributed import seed_everything, worker_info
from distrec.train.loop import open_feed
from distrec.train.progress import configure_logging
from distrec.train.session import TrainSession


def task_index(tasks, task: str) -> int:
    names = [t.name for t in tasks]
    if task.isdigit() and 1 <= int(task) <= len(tasks):
        return int(task)
    if task in names:
        return names.index(task) + 1
    raise ConfigError(f"--task {task!r}: expected 1..{len(tasks)} or one of {names}")


def evaluate_worker(rank: int, cfg_dict: dict, task: str, split: str) -> dict:
    configure_logging()
    cfg = OmegaConf.create(cfg_dict)
    seed_everything(cfg.run.seed)
    tasks = resolve_tasks(cfg)
    out = run_dir(cfg)
    state = ConureState.load(out, cfg.method.strategy)
    state.check_prefix(tasks)
    k = task_index(tasks, task)
    if k > len(state.tasks):
        raise ConfigError(f"task {tasks[k - 1].name} is not learned yet in {out} "
                          f"(learned: {state.learned}); run `distrec conure run` first")
    if one_model_per_task(cfg.method.strategy):
        specs, local, path = [tasks[k - 1].spec], 1, state.checkpoint_of(tasks[k - 1].name)
    else:
        specs, local, path = [t.spec for t in tasks[:len(state.tasks)]], k, state.tasks[-1]["checkpoint"]
    model = build_model(cfg, tasks[k - 1].schema, specs)
    session = TrainSession(cfg, model, worker_info(cfg.trainer.use_gpu), out, in_ray=False)
    load_weights(path, session.dmp)
    session.dmp.module.dense.set_mode(local, "infer" if cfg.method.strategy == "conure" else "plain")
    feed = open_feed(cfg, tasks[k - 1].schema, session.worker, tasks[k - 1].split(split), train=False)
    metrics, _ = evaluate_task(session, feed, tasks[k - 1].spec.kind, cfg.metrics.ks, 0)
    session.close()
    return {"task": tasks[k - 1].name, "split": split, "checkpoint": path, **metrics}
