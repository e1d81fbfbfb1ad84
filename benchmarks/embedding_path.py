"""Embedding path: fused TorchRec tables vs plain ``torch.nn.EmbeddingBag`` + ``torch.optim.Adagrad``.

    python benchmarks/embedding_path.py [--rows 10000 1000000 10000000] [--pooling 1 10 50]

One table of ``rows`` x ``--dim`` looked up by ``--features`` sum-pooled features, each bag
``pooling`` uniform-random ids, ``--batch-size`` samples per step; the pooled vectors go through
a fixed (untrained) projection into a BCE loss against fixed labels, so the step is the
embedding path alone: lookup, backward, optimizer update. Methods, interleaved per round:

  fused_rowwise_adagrad  EmbeddingBagCollection built on meta, sharded by DistributedModelParallel
                         (1 process, table-wise), fused TBE with EXACT_ROWWISE_ADAGRAD (distrec's
                         default: one accumulator per row)
  fused_adagrad          the same with EXACT_ADAGRAD: the same math as torch Adagrad
  plain_sparse_adagrad   nn.EmbeddingBag(sparse=True) + torch.optim.Adagrad (sparse gradients)
  plain_dense_adagrad    nn.EmbeddingBag(sparse=False) + torch.optim.Adagrad (dense gradients:
                         touches every row each step; only up to --dense-max-rows)

All start from the same weights; fused_adagrad and plain_sparse_adagrad then compute the same
update, so their losses must agree (recorded as ``exact_adagrad_max_loss_diff``). Above
--adagrad-max-rows, fused_adagrad is left out to bound memory (its state is as big as the table).
Writes benchmarks/results/embedding_path.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    add_common_args,
    backend_for,
    best_of,
    interleaved_rounds,
    machine_info,
    print_table,
    quiet,
    settings,
    spawn,
    worker_threads,
    write_report,
)

NAME = "embedding_path"
DEFAULTS = dict(rows=[10_000, 1_000_000, 10_000_000], pooling=[1, 10, 50], dim=64, features=8,
                batch_size=1024, steps=5, rounds=2, dense_max_rows=1_000_000, adagrad_max_rows=1_000_000)
TINY = dict(rows=[1_000, 20_000], pooling=[1, 5], dim=8, features=3, batch_size=64, steps=3, rounds=1,
            dense_max_rows=20_000, adagrad_max_rows=20_000)
LR, EPS = 0.05, 1e-8


def make_batches(rows: int, features: int, pooling: int, batch_size: int, steps: int, seed: int = 0):
    """``steps`` (ids [features*batch*pooling], labels [batch]) pairs; ids feature-major."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, rows, (features * batch_size * pooling,), generator=g),
             torch.randint(0, 2, (batch_size,), generator=g).float()) for _ in range(steps)]


class PooledLoss:
    """BCE of a fixed projection of the pooled [B, features*dim] vectors (nothing else trains)."""

    def __init__(self, features: int, dim: int, device) -> None:
        import torch

        g = torch.Generator().manual_seed(1)
        self.w = (torch.randn(features * dim, generator=g) / (features * dim) ** 0.5).to(device)

    def __call__(self, pooled, labels):
        import torch

        return torch.nn.functional.binary_cross_entropy_with_logits(pooled @ self.w, labels)


def fused_table(rows: int, dim: int, features: int, optimizer: str, device):
    """A 1-process DistributedModelParallel over an EmbeddingBagCollection built on meta."""
    import torch
    import torch.distributed as dist
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.distributed.planner.types import ParameterConstraints
    from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    from distrec.sparse.sharding import AnyDeviceEmbeddingBagSharder

    ebc = EmbeddingBagCollection(tables=[EmbeddingBagConfig(
        name="t", embedding_dim=dim, num_embeddings=rows, feature_names=[f"f{i}" for i in range(features)],
        pooling=PoolingType.SUM)], device=torch.device("meta"))
    fused = {"optimizer": getattr(EmbOptimType, optimizer), "learning_rate": LR, "eps": EPS}
    sharders = [AnyDeviceEmbeddingBagSharder(fused_params=fused)]
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=1, compute_device=device.type),
                                       constraints={"t": ParameterConstraints(sharding_types=["table_wise"])})
    plan = planner.collective_plan(ebc, sharders, dist.GroupMember.WORLD)
    return DistributedModelParallel(module=ebc, device=device, plan=plan, sharders=sharders,
                                    init_data_parallel=False)


def fused_weight(dmp):
    return dmp.state_dict()["embedding_bags.t.weight"].local_shards()[0].tensor


def path_worker(rank: int, s: dict, device_type: str, threads: int) -> list[dict]:
    import gc

    import torch
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    quiet()
    torch.set_num_threads(threads)
    device = torch.device(device_type, 0) if device_type == "cuda" else torch.device("cpu")
    F, B, D = s["features"], s["batch_size"], s["dim"]
    keys = [f"f{i}" for i in range(F)]
    loss_fn = PooledLoss(F, D, device)
    out = []
    for rows in s["rows"]:
        models: dict = {}
        torch.manual_seed(0)
        models["fused_rowwise_adagrad"] = fused_table(rows, D, F, "EXACT_ROWWISE_ADAGRAD", device)
        start = fused_weight(models["fused_rowwise_adagrad"]).detach().clone()
        if rows <= s["adagrad_max_rows"]:
            models["fused_adagrad"] = fused_table(rows, D, F, "EXACT_ADAGRAD", device)
            fused_weight(models["fused_adagrad"]).copy_(start)
        for kind in ("sparse", "dense"):
            if kind == "dense" and rows > s["dense_max_rows"]:
                continue
            bag = torch.nn.EmbeddingBag(rows, D, mode="sum", sparse=kind == "sparse", device=device)
            with torch.no_grad():
                bag.weight.copy_(start)
            models[f"plain_{kind}_adagrad"] = (bag, torch.optim.Adagrad(bag.parameters(), lr=LR, eps=EPS))
        del start
        for pooling in s["pooling"]:
            batches = [(ids.to(device), labels.to(device))
                       for ids, labels in make_batches(rows, F, pooling, B, s["steps"], seed=pooling)]
            lengths = torch.full((F * B,), pooling, dtype=torch.int64, device=device)
            offsets = torch.arange(0, F * B * pooling, pooling, device=device)

            def run_fused(dmp):
                losses = []
                for ids, labels in batches:
                    kjt = KeyedJaggedTensor(keys=keys, values=ids, lengths=lengths)
                    pooled = dmp(kjt).values()
                    loss = loss_fn(pooled, labels)
                    loss.backward()  # the fused optimizer updates the table here
                    losses.append(loss.detach())
                return [float(x) for x in losses]

            def run_plain(bag, opt):
                losses = []
                for ids, labels in batches:
                    opt.zero_grad(set_to_none=True)
                    pooled = bag(ids, offsets).view(F, B, D).transpose(0, 1).reshape(B, F * D)
                    loss = loss_fn(pooled, labels)
                    loss.backward()
                    opt.step()
                    losses.append(loss.detach())
                return [float(x) for x in losses]

            methods = {name: (lambda m=m: run_fused(m)) if name.startswith("fused") else (lambda m=m: run_plain(*m))
                       for name, m in models.items()}
            first_round: dict = {}

            def keep(name, r, losses, first_round=first_round):
                first_round.setdefault(name, losses)  # the warm-up round: every method from the same start

            sync = torch.cuda.synchronize if device.type == "cuda" else None
            best = best_of(interleaved_rounds(methods, s["rounds"], sync=sync, on_result=keep))
            row = {"rows": rows, "pooling": pooling, "methods": {}}
            for name, b in best.items():
                row["methods"][name] = {"samples_per_s": round(s["steps"] * B / b["wall_s"], 1),
                                        "wall_s": round(b["wall_s"], 4), "cpu_s": round(b["cpu_s"], 4),
                                        "spread": b["spread"]}
            ref = best["plain_sparse_adagrad"]
            for name, b in best.items():
                row["methods"][name]["speedup_vs_plain_sparse"] = round(ref["wall_s"] / b["wall_s"], 3)
                row["methods"][name]["cpu_speedup_vs_plain_sparse"] = round(ref["cpu_s"] / b["cpu_s"], 3)
            row["losses_finite"] = all(all(x == x and abs(x) != float("inf") for x in v) for v in first_round.values())
            row["first_round_losses"] = first_round
            if "fused_adagrad" in first_round:
                row["exact_adagrad_max_loss_diff"] = max(
                    abs(a - b) for a, b in zip(first_round["fused_adagrad"], first_round["plain_sparse_adagrad"]))
            out.append(row)
        del models
        gc.collect()
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--rows", type=int, nargs="+", default=None)
    parser.add_argument("--pooling", type=int, nargs="+", default=None)
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--features", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--dense-max-rows", type=int, default=None)
    parser.add_argument("--adagrad-max-rows", type=int, default=None)
    args = parser.parse_args(argv)
    s = settings(args, TINY, DEFAULTS)
    threads = worker_threads(1)
    rows = spawn(path_worker, 1, s, args.device, threads, backend=backend_for(args.device))[0]

    table = []
    for r in rows:
        for name, m in r["methods"].items():
            table.append([f"{r['rows']:,} x {s['dim']}", r["pooling"], name, m["samples_per_s"],
                          m["speedup_vs_plain_sparse"], m["cpu_s"], m["spread"]])
    print_table(["table", "pool", "method", "samples/s", "vs plain sparse", "cpu s", "spread"], table,
                title=f"{s['features']} features, batch {s['batch_size']}, {s['steps']} steps/round, "
                      f"best of {s['rounds']} rounds, {threads} threads")
    report = {
        "benchmark": NAME,
        "what": "fused TorchRec TBE (row-wise Adagrad / Adagrad) vs nn.EmbeddingBag + torch Adagrad, "
                "lookup + backward + update, same shapes and batches",
        "settings": {**s, "lr": LR, "eps": EPS, "threads": threads, "device": args.device, "tiny": args.tiny,
                     "ids": "uniform random over the table", "loss": "BCE of a fixed projection of pooled vectors"},
        "results": rows,
        "summary": {
            f"{r['rows']}_rows_pool_{r['pooling']}": {
                "fused_rowwise_vs_plain_sparse": r["methods"]["fused_rowwise_adagrad"]["speedup_vs_plain_sparse"],
                **({"fused_adagrad_vs_plain_sparse": r["methods"]["fused_adagrad"]["speedup_vs_plain_sparse"]}
                   if "fused_adagrad" in r["methods"] else {}),
            } for r in rows
        },
        "machine": machine_info(args.device),
    }
    write_report(NAME, report, args.out_dir, args.device)
    return report


if __name__ == "__main__":
    main()
