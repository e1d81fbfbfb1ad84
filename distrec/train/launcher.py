"""Start a run: resolve data, save the config, launch Ray Train's TorchTrainer on the workers."""

from __future__ import annotations

import importlib
import json
import logging
import os
import posixpath
import socket
import time

from distrec.config.load import config_to_dict, run_dir, save_resolved_config
from distrec.storage import arrow_filesystem, filesystem, is_s3, use_s3_endpoint
from distrec.train.distributed import LOOPBACK_ENV, use_loopback_defaults
from distrec.train.run_lock import hold_run_lock
from distrec.train.worker_resources import wait_for_worker_resources

log = logging.getLogger("distrec")
RAY_CHECKPOINT_REGISTRY = "checkpoint_manager_snapshot.json"  # Ray Train's list of reported checkpoints
EARLIER_RUN_FILES = ("checkpoints", "best", "metrics.jsonl", "summary.json")
# Settings (never credentials) that workers of an embedded cluster must share with the driver;
# credentials reach workers through the inherited process environment, not Ray's runtime_env.
FORWARDED_ENV = ("GLOO_SOCKET_IFNAME", "MASTER_ADDR", "DS_ACCELERATOR", "TORCH_EXTENSIONS_DIR", "OMP_WAIT_POLICY",
                 "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")


def ray_worker_entry(loop_config: dict) -> None:
    """What every Ray Train worker runs (module level so Ray can pickle it by reference)."""
    from omegaconf import OmegaConf

    from distrec.train.progress import configure_logging

    # Before the recipe's imports: fbgemm logs every library it loads on the root logger at INFO,
    # the level Ray Train gives its workers' root logger.
    configure_logging()
    cfg = OmegaConf.create(loop_config["config"])
    use_s3_endpoint(cfg.data.s3_endpoint_url)
    module, _, function = loop_config["entry"].partition(":")
    getattr(importlib.import_module(module), function)(cfg, in_ray=True)


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
    # Ray turns token auth on for a new local cluster and says so at WARNING on every start.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    dashboard_port = _free_port()
    ray.init(
        num_cpus=max(os.cpu_count() or 1, int(num_cpus_needed + 1.999)),
        # Ray Train's placement-group cleaner polls the State API, which the dashboard serves;
        # without it the cleaner logs a warning every second of the run.
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {**worker_env(), **embedded_cluster_env(dashboard_port)}},
        log_to_driver=True,  # the chief worker's progress lines reach the terminal this way
        logging_level=logging.WARNING,  # not "Started a local Ray instance"
    )


def worker_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    for key, value in LOOPBACK_ENV.items():
        env.setdefault(key, value)
    return env


def embedded_cluster_env(dashboard_port: int) -> dict[str, str]:
    """Ray settings for the processes of a cluster started for one run on one machine."""
    return {
        # Ray's State API clients (the placement-group cleaner) look for "the" local cluster and
        # fail when another one runs on the machine (a test suite's, a second run's): name ours.
        "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dashboard_port}",
        # One machine is never drained or preempted; the watcher's actor only adds a log line.
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_training(cfg, entry: str) -> dict:
    """Run ``entry`` ("module:function", called as ``function(cfg, in_ray=True)``) on
    ``trainer.num_workers`` Ray Train workers; returns the final metrics. The data must exist
    (``distrec.methods.train`` prepares it first). The run holds its directory's lock from before
    its first write there to its end."""
    from distrec.data.prepare import check_inputs

    check_inputs(cfg)
    out = run_dir(cfg)
    with hold_run_lock(out, cfg.data.s3_endpoint_url):
        return _launch(cfg, entry, out)


def _launch(cfg, entry: str, out: str) -> dict:
    from ray.train import FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from distrec.train.fail_fast import StopOnInputErrors, unwrap_input_error

    save_resolved_config(cfg, out)
    endpoint = cfg.data.s3_endpoint_url
    trainer_cfg = cfg.trainer
    # Ray Train (read here, in the driver) would move each worker into a scratch directory;
    # config paths are relative to where `distrec run` starts, or to a job's working directory.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    address = trainer_cfg.address or os.environ.get("RAY_ADDRESS")
    log.info("starting %d training workers on %s; run directory %s", trainer_cfg.num_workers,
             f"the Ray cluster at {address}" if address else "a local Ray (127.0.0.1)", out)
    ensure_ray(trainer_cfg.address, trainer_cfg.num_workers * trainer_cfg.cpus_per_worker, trainer_cfg.use_gpu)
    wait_for_worker_resources(trainer_cfg)
    storage_path, storage_filesystem = _ray_storage(cfg.run.output_dir, endpoint)
    trainer = TorchTrainer(
        train_loop_per_worker=ray_worker_entry,
        train_loop_config={"config": config_to_dict(cfg), "entry": entry},
        scaling_config=ScalingConfig(
            num_workers=trainer_cfg.num_workers,
            use_gpu=trainer_cfg.use_gpu,
            resources_per_worker={"CPU": trainer_cfg.cpus_per_worker},
            placement_strategy=str(trainer_cfg.placement_strategy),
        ),
        # on GPUs NCCL carries CUDA tensors and gloo the CPU ones (metric gathers, counters)
        torch_config=TorchConfig(backend="cpu:gloo,cuda:nccl" if trainer_cfg.use_gpu else "gloo",
                                 timeout_s=trainer_cfg.timeout_s),
        run_config=RunConfig(
            name=cfg.run.name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=FailureConfig(max_failures=trainer_cfg.max_failures),
            callbacks=[StopOnInputErrors()],  # a DataError/ConfigError in a worker is not retried
            # Ray Train's own INFO lines (resource requests, worker group start, process group
            # set-up) stay in its log files; its warnings and workers' errors still print.
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )
    _forget_earlier_launches(out, cfg.run.resume, endpoint)
    try:
        trainer.fit()
    except Exception as exc:
        cause = unwrap_input_error(exc)
        if cause is exc:
            raise
        raise cause from None
    from distrec.train.plots import plot_training_curves

    plot_training_curves(out, endpoint)
    return final_metrics(out, endpoint)


def _ray_storage(output_dir: str, s3_endpoint_url: str | None):
    """Ray Train's storage_path and storage_filesystem for the run's output_dir: its own
    filesystem (Ray resolves the URL) unless data.s3_endpoint_url names the S3 endpoint."""
    if is_s3(output_dir) and s3_endpoint_url:
        fs, path = arrow_filesystem(output_dir, s3_endpoint_url)
        return path, fs
    return _absolute(output_dir), None


def _forget_earlier_launches(out: str, resume: bool, s3_endpoint_url: str | None = None) -> None:
    """Ray Train would resume a new launch from its registry of an earlier one in this directory
    (even without run.resume, and failing once distrec pruned checkpoints it lists): every launch
    starts without it and resumes only with run.resume, from the run's newest complete checkpoint.
    A launch without run.resume sets an earlier run's checkpoints and records aside, under
    ``earlier/<time>/``, so the new run neither mixes with nor deletes them."""
    fs, path = filesystem(out, s3_endpoint_url)
    registry = posixpath.join(path, RAY_CHECKPOINT_REGISTRY)
    if fs.exists(registry):
        fs.rm(registry)
    earlier = [name for name in EARLIER_RUN_FILES if fs.exists(posixpath.join(path, name))]
    if resume or not earlier:
        return
    aside = posixpath.join(path, "earlier", time.strftime("%Y%m%d-%H%M%S"))
    fs.makedirs(aside, exist_ok=True)
    for name in earlier:
        fs.mv(posixpath.join(path, name), posixpath.join(aside, name), recursive=True)
    log.info("%s held an earlier run (no run.resume): its %s moved to %s", out, ", ".join(earlier), aside)


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def final_metrics(out: str, s3_endpoint_url: str | None = None) -> dict:
    """The run's result: ``summary.json``'s final metrics when the loop wrote one, else the last
    record of ``metrics.jsonl`` (Ray's Result.metrics can be empty, so we keep our own)."""
    fs, path = filesystem(out, s3_endpoint_url)
    summary = posixpath.join(path, "summary.json")
    if fs.exists(summary):
        with fs.open(summary, "r") as fh:
            return json.load(fh)["final"]
    with fs.open(posixpath.join(path, "metrics.jsonl"), "r") as fh:
        lines = [line for line in fh.read().splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else {}
