"""Turn a meta-device model into a TorchRec DistributedModelParallel with a sharding plan."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.types import ShardingPlan

from distrec.errors import ConfigError
from distrec.sparse.sharding import PlanRequest, make_sharders, plan_sharding
from distrec.train.distributed import WorkerInfo


def plan_request(cfg, world_size: int, compute_device: str, local_world_size=None) -> PlanRequest:
    return PlanRequest(
        world_size=world_size,
        compute_device=compute_device,
        local_world_size=local_world_size,
        hbm_gb=cfg.sharding.hbm_gb,
        ddr_gb=cfg.sharding.ddr_gb,
        batch_size=cfg.data.batch_size,
    )


def table_names(model: torch.nn.Module) -> list[str]:
    names = []
    for module in model.modules():
        for attr in ("embedding_bag_configs", "embedding_configs"):
            getter = getattr(module, attr, None)
            if callable(getter):
                names.extend(t.name for t in getter())
    return names


def shard_model(model: torch.nn.Module, cfg, worker: WorkerInfo) -> tuple[DistributedModelParallel, ShardingPlan]:
    """Shard the embedding tables; dense parameters get DDP unless DeepSpeed owns them."""
    uses_deepspeed = cfg.dense.backend == "deepspeed"
    if uses_deepspeed and "data_parallel" in _requested_types(cfg):
        raise ConfigError(
            "sharding: data_parallel tables need DDP; with dense.backend=deepspeed use "
            "table_wise/row_wise/column_wise"
        )
    request = plan_request(cfg, worker.world_size, worker.device.type, worker.local_world_size)
    pg = dist.GroupMember.WORLD if dist.is_initialized() else None
    plan = plan_sharding(model, cfg.sharding, cfg.embedding_optimizer, table_names(model), request, pg)
    dmp = DistributedModelParallel(
        module=model,
        device=worker.device,
        plan=plan,
        sharders=make_sharders(cfg.embedding_optimizer),
        init_data_parallel=not uses_deepspeed,
    )
    return dmp, plan


def _requested_types(cfg) -> set[str]:
    types = set(cfg.sharding.default_types)
    for table in cfg.sharding.tables.values():
        types.update(table.sharding_types)
    return types
