"""Fail a run that the Ray cluster cannot place, instead of waiting for its workers forever."""

from __future__ import annotations

from distrec.errors import ClusterError


def worker_bundle(trainer_cfg) -> dict[str, float]:
    """What Ray Train reserves for each worker (ScalingConfig: one GPU each with use_gpu)."""
    bundle = {"CPU": float(trainer_cfg.cpus_per_worker)}
    if trainer_cfg.use_gpu:
        bundle["GPU"] = 1.0
    return bundle


def wait_for_worker_resources(trainer_cfg) -> None:
    """Reserve the workers' bundles as Ray Train will (a placement group with the run's strategy)
    and release them once placed. On a cluster that cannot place them within
    ``trainer.startup_timeout_s`` (too few CPUs or GPUs, STRICT_SPREAD over too few nodes, an
    autoscaler that adds none) raise ClusterError with what was asked and what the cluster has."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    bundle = worker_bundle(trainer_cfg)
    strategy = str(trainer_cfg.placement_strategy)
    group = placement_group([bundle] * trainer_cfg.num_workers, strategy=strategy)
    try:
        ready, _ = ray.wait([group.ready()], timeout=trainer_cfg.startup_timeout_s)
    finally:
        remove_placement_group(group)
    if ready:
        return
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    raise ClusterError(
        f"the Ray cluster could not place {trainer_cfg.num_workers} workers of {_resources(bundle)} each "
        f"(trainer.num_workers, trainer.cpus_per_worker, trainer.use_gpu; placement {strategy}) within "
        f"trainer.startup_timeout_s={trainer_cfg.startup_timeout_s:g} s; the cluster has "
        f"{_resources(ray.cluster_resources())} on {nodes} node(s), of which "
        f"{_resources(ray.available_resources())} are free"
    )


def _resources(resources: dict) -> str:
    shown = {name: resources.get(name, 0.0) for name in ("CPU", "GPU")}
    return ", ".join(f"{amount:g} {name}" for name, amount in shown.items())
