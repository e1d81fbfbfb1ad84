"""Sharding plans from config constraints, with row-wise sharding enabled on CPU too.

TorchRec only offers row-wise, table-row-wise and grid sharding for CUDA because of the
sharder's advertised types, not the kernels: on CPU with gloo they work, so our sharders
advertise them for every device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import distributed as dist
from torchrec.distributed.embedding import EmbeddingCollectionSharder
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.planner.types import ParameterConstraints
from torchrec.distributed.types import ShardingPlan, ShardingType
from torchrec.optim.optimizers import in_backward_optimizer_filter  # noqa: F401 (re-export)

from distrec.errors import ConfigError
from distrec.sparse.optimizer import fused_params

# config values (schema.EmbeddingShardingType) are TorchRec's ShardingType values
_ALL_DEVICE_TYPES = [
    ShardingType.DATA_PARALLEL.value,
    ShardingType.TABLE_WISE.value,
    ShardingType.COLUMN_WISE.value,
    ShardingType.TABLE_COLUMN_WISE.value,
    ShardingType.ROW_WISE.value,
    ShardingType.TABLE_ROW_WISE.value,
]


class AnyDeviceEmbeddingBagSharder(EmbeddingBagCollectionSharder):
    def sharding_types(self, compute_device_type: str) -> list[str]:
        return list(_ALL_DEVICE_TYPES)


class AnyDeviceEmbeddingSharder(EmbeddingCollectionSharder):
    # EmbeddingCollection cannot be data-parallel (fails in TorchRec on every device).
    def sharding_types(self, compute_device_type: str) -> list[str]:
        return [t for t in _ALL_DEVICE_TYPES if t != ShardingType.DATA_PARALLEL.value]


def make_sharders(optimizer_cfg) -> list:
    params = fused_params(optimizer_cfg)
    return [
        AnyDeviceEmbeddingBagSharder(fused_params=params),
        AnyDeviceEmbeddingSharder(fused_params=params),
    ]


def parameter_constraints(sharding_cfg, table_names: list[str]) -> dict[str, ParameterConstraints]:
    """Per-table planner constraints: ``sharding.tables.<table>`` over ``sharding.default_types``."""
    unknown = sorted(set(sharding_cfg.tables) - set(table_names))
    if unknown:
        raise ConfigError(
            f"sharding.tables names unknown table(s) {unknown}; tables in the schema: {table_names}"
        )
    constraints = {}
    for name in table_names:
        table_cfg = sharding_cfg.tables.get(name)
        types = list(table_cfg.sharding_types) if table_cfg and table_cfg.sharding_types else []
        types = types or list(sharding_cfg.default_types)
        kernel = table_cfg.compute_kernel if table_cfg else None
        min_partition = table_cfg.min_partition if table_cfg else None
        if not types and not kernel and not min_partition:
            continue
        constraints[name] = ParameterConstraints(
            sharding_types=[str(t) for t in types] or None,
            compute_kernels=[str(kernel)] if kernel else None,
            min_partition=min_partition,
        )
    return constraints


@dataclass
class PlanRequest:
    world_size: int
    compute_device: str  # "cpu" | "cuda"
    local_world_size: int | None = None
    hbm_gb: float | None = None
    ddr_gb: float | None = None
    batch_size: int = 512


def build_planner(sharding_cfg, table_names: list[str], request: PlanRequest):
    gib = 1024**3
    topology = Topology(
        world_size=request.world_size,
        compute_device=request.compute_device,
        local_world_size=request.local_world_size,
        hbm_cap=int(request.hbm_gb * gib) if request.hbm_gb else None,
        ddr_cap=int(request.ddr_gb * gib) if request.ddr_gb else None,
    )
    return EmbeddingShardingPlanner(
        topology=topology,
        batch_size=request.batch_size,
        constraints=parameter_constraints(sharding_cfg, table_names),
    )


def plan_sharding(module: torch.nn.Module, sharding_cfg, optimizer_cfg, table_names, request,
                  pg: dist.ProcessGroup | None = None) -> ShardingPlan:
    """A plan for ``module``; collective (every rank gets rank 0's plan) when ``pg`` is given."""
    planner = build_planner(sharding_cfg, table_names, request)
    sharders = make_sharders(optimizer_cfg)
    if pg is not None:
        return planner.collective_plan(module, sharders, pg)
    return planner.plan(module, sharders)
