"""``distrec plan``: the sharding plan of a config and each rank's memory, without training."""

from __future__ import annotations

from collections import defaultdict

from torchrec.distributed.types import EnumerableShardingSpec

from distrec.data.schema import FeatureSchema
from distrec.methods import recipe
from distrec.sparse.sharding import plan_sharding
from distrec.train.sharded_model import plan_request, table_names

# fp32 optimizer state per row (row-wise Adagrad), per weight (Adagrad/Adam moments) or none
OPTIMIZER_STATE_FLOATS = {"exact_sgd": (0, 0), "exact_rowwise_adagrad": (1, 0),
                          "exact_adagrad": (0, 1), "adam": (0, 2)}


def shard_rows(plan) -> list[tuple[str, str, int, int, int]]:
    """(table, sharding type, rank, rows, cols) for every shard in the plan."""
    rows = []
    for module_plan in plan.plan.values():
        for table, param in module_plan.items():
            spec = param.sharding_spec
            if isinstance(spec, EnumerableShardingSpec):
                for shard in spec.shards:
                    rank = shard.placement.rank()
                    rows.append((table, param.sharding_type, rank, shard.shard_sizes[0], shard.shard_sizes[1]))
            else:  # data parallel: a full replica on every rank
                for rank in param.ranks or []:
                    rows.append((table, param.sharding_type, rank, -1, -1))
    return rows


def build_plan_report(cfg, world_size: int | None = None, device: str | None = None,
                      local_world_size: int | None = None) -> str:
    schema = FeatureSchema.load(cfg.data.schema, cfg.data.s3_endpoint_url)
    model = recipe(cfg.run.recipe).build_model(cfg, schema)
    world = world_size or cfg.trainer.num_workers
    compute_device = device or ("cuda" if cfg.trainer.use_gpu else "cpu")
    request = plan_request(cfg, world, compute_device, local_world_size)
    plan = plan_sharding(model, cfg.sharding, cfg.embedding_optimizer, table_names(model), request)
    sizes = {spec.name: spec.num_embeddings for spec in schema.tables()}
    dims = {c.name: c.embedding_dim for m in model.modules() if hasattr(m, "embedding_bag_configs")
            for c in m.embedding_bag_configs()}
    per_row, per_weight = OPTIMIZER_STATE_FLOATS.get(cfg.embedding_optimizer.type, (0, 0))
    per_rank = defaultdict(float)
    hosts = f", {local_world_size} per host" if local_world_size else ""
    lines = [f"sharding plan: {world} ranks{hosts}, device {compute_device}", "",
             f"{'table':<24}{'type':<18}{'rank':>5}{'rows':>14}{'cols':>6}{'MiB':>10}"]
    for table, kind, rank, rows, cols in shard_rows(plan):
        if rows < 0:
            rows, cols = sizes[table], dims[table]
        mib = (rows * cols * (1 + per_weight) + rows * per_row) * 4 / 2**20
        per_rank[rank] += mib
        lines.append(f"{table:<24}{kind:<18}{rank:>5}{rows:>14,}{cols:>6}{mib:>10.1f}")
    dense_params = sum(p.numel() for p in model.dense.parameters())
    dense_mib = dense_params * 4 * 4 / 2**20  # weights, grads and two Adam moments, fp32
    lines += ["", f"dense part: {dense_params:,} parameters, ~{dense_mib:.1f} MiB per rank "
              "(weights+grads+Adam; ZeRO shards the optimizer share)", "",
              f"{'rank':>5}{'embedding MiB':>16}{'total MiB':>12}"]
    for rank in range(world):
        lines.append(f"{rank:>5}{per_rank[rank]:>16.1f}{per_rank[rank] + dense_mib:>12.1f}")
    return "\n".join(lines)
