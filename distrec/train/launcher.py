"""Start a run: resolve data, save the config, launch Ray Train's TorchTrainer on the workers."""

from __future__ import annotations

import importlib
import json
import logging
import os
import posixpath

import fsspec

from distrec.config.load import config_to_dict, run_dir, save_resolved_config
from distrec.train.distributed import LOOPBACK_ENV, use_loopback_defaults

log = logging.getLogger("distrec")
# Settings (never credentials) that workers of an embedded cluster must share with the driver;
# credentials reach workers through the inherited process environment, not Ray's runtime_env.
FORWARDED_ENV = ("GLOO_SOCKET_IFNAME", "MASTER_ADDR", "DS_ACCELERATOR", "TORCH_EXTENSIONS_DIR", "OMP_WAIT_POLICY",
                 "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")


def ray_worker_entry(loop_config: dict) -> None:
    """What every Ray Train worker runs (module level so Ray can pickle it by reference)."""
    from omegaconf import OmegaConf

    from distrec.recipes import recipe_module

    cfg = OmegaConf.create(loop_config["config"])
    entry = loop_config.get("entry")  # "module:function" run instead of the recipe's train_worker
    if entry:
        module, _, function = entry.partition(":")
        getattr(importlib.import_module(module), function)(cfg, in_ray=True)
        return
    recipe_module(cfg.run.recipe).train_worker(cfg, in_ray=True)


def ensure_ray(address: str | None, num_cpus_needed: float, gpu: bool) -> None:
    """Connect to ``address`` or start an embedded single-node Ray bound to 127.0.0.1."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")  # set inside a Ray job
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    use_loopback_defaults(gpu)
    ray.init(
        num_cpus=max(os.cpu_count() or 1, int(num_cpus_needed + 1.999)),
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": worker_env()},
        log_to_driver=True,
    )


def worker_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    for key, value in LOOPBACK_ENV.items():
        env.setdefault(key, value)
    return env


def run_training(cfg, entry: str | None = None) -> dict:
    """Run ``cfg`` on ``trainer.num_workers`` Ray Train workers; returns the final metrics.

    ``entry`` ("module:function", called as ``function(cfg, in_ray=True)`` in every worker)
    replaces the recipe's ``train_worker``, e.g. for a recipe's other distributed jobs."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from distrec.data.prepare import check_inputs, prepare_data

    prepare_data(cfg)
    check_inputs(cfg)
    out = run_dir(cfg)
    save_resolved_config(cfg, out)
    trainer_cfg = cfg.trainer
    # Ray Train (read here, in the driver) would move each worker into a scratch directory;
    # config paths are relative to where `distrec run` starts, or to a job's working directory.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    ensure_ray(trainer_cfg.address, trainer_cfg.num_workers * trainer_cfg.cpus_per_worker, trainer_cfg.use_gpu)
    trainer = TorchTrainer(
        train_loop_per_worker=ray_worker_entry,
        train_loop_config={"config": config_to_dict(cfg), "entry": entry},
        scaling_config=ScalingConfig(
            num_workers=trainer_cfg.num_workers,
            use_gpu=trainer_cfg.use_gpu,
            resources_per_worker={"CPU": trainer_cfg.cpus_per_worker},
            placement_strategy=trainer_cfg.placement_strategy,
        ),
        # on GPUs NCCL carries CUDA tensors and gloo the CPU ones (metric gathers, counters)
        torch_config=TorchConfig(backend="cpu:gloo,cuda:nccl" if trainer_cfg.use_gpu else "gloo",
                                 timeout_s=trainer_cfg.timeout_s),
        run_config=RunConfig(
            name=cfg.run.name,
            storage_path=_absolute(cfg.run.output_dir),
            failure_config=FailureConfig(max_failures=trainer_cfg.max_failures),
        ),
    )
    trainer.fit()
    from distrec.train.plots import plot_training_curves

    plot_training_curves(out)
    return final_metrics(out)


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def final_metrics(out: str) -> dict:
    """The last record of ``metrics.jsonl`` (Ray's Result.metrics can be empty, so we keep our own)."""
    path = posixpath.join(out, "metrics.jsonl")
    with fsspec.open(path, "r") as fh:
        lines = [line for line in fh.read().splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else {}
