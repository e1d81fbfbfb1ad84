"""Memory: peak RSS per worker vs table size, row-wise sharded over 2 workers, built on meta.

    python benchmarks/memory.py [--rows 1000000 5000000 10000000] [--dim 64] [--cpu-build-rows 5000000]

For each size, 2 fresh worker processes (gloo) build distrec's CTR model with one sparse field
whose table has ``rows`` x ``dim`` fp32 weights, shard it row-wise through TrainSession
(DistributedModelParallel, fused row-wise Adagrad, DDP + Adam for the small dense part) and
train one step. Each worker records its resident memory (Linux /proc/self/status: VmRSS now,
VmHWM = peak) at start, after building the model, after sharding and after the step.

  meta  the model's tables on the meta device (distrec's build_model): only this rank's shard
        is ever allocated
  cpu   the same model with its tables materialised on CPU first (what a plain
        ``EmbeddingBagCollection(..., device="cpu")`` does), then sharded: every rank holds
        the whole table for a while (run for --cpu-build-rows only)

The processes fork from a server that already imported torch/torchrec, so "start" RSS includes
those shared pages; "peak - start" is what the model and step added. Writes
benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import engine_overhead  # noqa: E402
from benchmarks._common import (  # noqa: E402
    add_common_args,
    backend_for,
    machine_info,
    print_table,
    quiet,
    settings,
    spawn,
    worker_threads,
    write_report,
)

NAME = "memory"
DEFAULTS = dict(rows=[1_000_000, 5_000_000, 10_000_000], dim=64, cpu_build_rows=5_000_000, batch_size=1024, workers=2)
TINY = dict(rows=[20_000, 200_000], dim=16, cpu_build_rows=200_000, batch_size=64, workers=2)
GIB = 2**30


def rss() -> dict:
    """VmRSS and VmHWM (peak) of this process in bytes (ru_maxrss where /proc is missing)."""
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out = {"VmRSS": peak, "VmHWM": peak}
    return {"rss": out["VmRSS"], "peak": out["VmHWM"]}


def one_field_schema(rows: int):
    from distrec.data.schema import FeatureSchema, SparseField

    return FeatureSchema(sparse=(SparseField("item", rows),), dense=("d0",), labels=("click",))


def build_model_on(cfg, schema, device):
    """distrec.methods.ctr.recipe.build_model with the tables on ``device`` instead of meta."""
    from distrec.models.ctr import CtrDenseNet, CtrModel
    from distrec.sparse.tables import (
        build_embedding_bags,
        embedding_bag_configs,
        table_dims,
    )

    dims = table_dims(schema, cfg.model.embedding_dim, cfg.sharding.tables)
    sparse = build_embedding_bags(embedding_bag_configs(schema, dims), device=device)
    dense = CtrDenseNet(cfg.model.arch, len(schema.dense), [dims[t.name] for t in schema.tables()], cfg.model)
    return CtrModel(sparse, dense, schema.sparse_names)


def random_batch(schema, batch_size: int, rows: int, seed: int):
    import torch
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from distrec.data.batch import RecBatch

    g = torch.Generator().manual_seed(seed)
    sparse = KeyedJaggedTensor.from_lengths_sync(
        schema.sparse_names, torch.randint(0, rows, (batch_size,), generator=g),
        torch.ones(batch_size, dtype=torch.int64))
    return RecBatch(torch.randn(batch_size, 1, generator=g), sparse,
                    torch.randint(0, 2, (batch_size, 1), generator=g).float(),
                    torch.ones(batch_size), torch.zeros(batch_size, dtype=torch.int64))


def memory_worker(rank: int, cfg_dict: dict, rows: int, build_on: str, batch_size: int, threads: int,
                  run_dir: str) -> dict:
    import gc

    import torch
    from omegaconf import OmegaConf

    from distrec.train.distributed import seed_everything, worker_info
    from distrec.train.progress import configure_logging
    from distrec.train.session import TrainSession

    configure_logging()
    quiet()
    torch.set_num_threads(threads)
    stages = {"start": rss()}
    cfg = OmegaConf.create(cfg_dict)
    schema = one_field_schema(rows)
    worker = worker_info(cfg.trainer.use_gpu)
    seed_everything(cfg.run.seed)
    model = build_model_on(cfg, schema, torch.device("meta") if build_on == "meta" else torch.device("cpu"))
    stages["built"] = rss()
    session = TrainSession(cfg, model, worker, run_dir, in_ray=False)
    del model
    gc.collect()
    stages["sharded"] = rss()
    out = session.pipeline.progress(iter([random_batch(schema, batch_size, rows, seed=rank)]))
    stages["after_step"] = rss()
    weight = next(v for k, v in session.dmp.state_dict().items() if k.endswith("sparse.embedding_bags.item.weight"))
    shard_rows = sum(s.tensor.shape[0] for s in weight.local_shards())
    result = {"stages": stages, "local_shard_rows": shard_rows, "loss": float(out["loss"]),
              "sharding_type": session.plan.plan["sparse"]["item"].sharding_type}
    if worker.device.type == "cuda":
        result["cuda_max_allocated"] = torch.cuda.max_memory_allocated()
    session.close()
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--rows", type=int, nargs="+", default=None)
    parser.add_argument("--dim", type=int, default=None)
    parser.add_argument("--cpu-build-rows", type=int, default=None, help="0: skip the build-on-CPU baseline")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (CUDA: one GPU each)")
    args = parser.parse_args(argv)
    quiet()
    s = settings(args, TINY, DEFAULTS)
    workers = s["workers"]
    threads = worker_threads(workers)
    runs = [(rows, "meta") for rows in s["rows"]]
    if s["cpu_build_rows"]:
        runs.append((s["cpu_build_rows"], "cpu"))
    results = []
    with tempfile.TemporaryDirectory(prefix="distrec-bench-memory-") as tmp:
        cfg = engine_overhead.make_config(f"{tmp}/nodata", f"{tmp}/runs", s["batch_size"], s["dim"], args.device,
                                          extra=("model.dense_arch=[16]", "model.over_arch=[16]"))
        for rows, build_on in runs:
            out = spawn(memory_worker, workers, cfg, rows, build_on, s["batch_size"], threads,
                        f"{tmp}/runs/{rows}-{build_on}", backend=backend_for(args.device))
            table_bytes = rows * s["dim"] * 4
            entry = {"rows": rows, "dim": s["dim"], "build_on": build_on, "table_gib": round(table_bytes / GIB, 3),
                     "table_gib_per_rank_sharded": round(table_bytes / workers / GIB, 3),
                     "sharding_type": out[0]["sharding_type"],
                     "local_shard_rows": [o["local_shard_rows"] for o in out],
                     "shard_rows_sum_ok": sum(o["local_shard_rows"] for o in out) == rows,
                     "losses_finite": all(o["loss"] == o["loss"] for o in out), "ranks": []}
            for o in out:
                st = o["stages"]
                rank_entry = {
                    "start_rss_gib": round(st["start"]["rss"] / GIB, 3),
                    "peak_rss_gib": round(st["after_step"]["peak"] / GIB, 3),
                    "peak_minus_start_gib": round((st["after_step"]["peak"] - st["start"]["rss"]) / GIB, 3),
                    "rss_after_build_gib": round(st["built"]["rss"] / GIB, 3),
                    "rss_after_shard_gib": round(st["sharded"]["rss"] / GIB, 3),
                    "rss_after_step_gib": round(st["after_step"]["rss"] / GIB, 3),
                }
                if "cuda_max_allocated" in o:
                    rank_entry["cuda_max_allocated_gib"] = round(o["cuda_max_allocated"] / GIB, 3)
                entry["ranks"].append(rank_entry)
            entry["max_peak_rss_gib"] = max(r["peak_rss_gib"] for r in entry["ranks"])
            entry["max_peak_minus_start_gib"] = max(r["peak_minus_start_gib"] for r in entry["ranks"])
            results.append(entry)

    meta = {e["rows"]: e for e in results if e["build_on"] == "meta"}
    comparison = None
    cpu = next((e for e in results if e["build_on"] == "cpu"), None)
    if cpu is not None and cpu["rows"] in meta:
        m = meta[cpu["rows"]]
        comparison = {"rows": cpu["rows"], "peak_minus_start_gib_meta": m["max_peak_minus_start_gib"],
                      "peak_minus_start_gib_cpu_build": cpu["max_peak_minus_start_gib"],
                      "cpu_build_over_meta": round(cpu["max_peak_minus_start_gib"]
                                                   / max(m["max_peak_minus_start_gib"], 1e-9), 2)}
    print_table(["table", "built on", "GiB/rank (shard)", "start RSS", "peak RSS", "peak - start", "shard rows"],
                [[f"{e['rows']:,} x {e['dim']}", e["build_on"], e["table_gib_per_rank_sharded"],
                  max(r["start_rss_gib"] for r in e["ranks"]), e["max_peak_rss_gib"], e["max_peak_minus_start_gib"],
                  "/".join(str(x) for x in e["local_shard_rows"])] for e in results],
                title=f"{workers} worker(s), row-wise, fused row-wise Adagrad, one training step (GiB, worst rank)")
    report = {
        "benchmark": NAME,
        "what": "peak RSS per worker vs embedding table size, row-wise sharded over 2 workers, "
                "tables built on meta (distrec) vs materialised on CPU first",
        "settings": {**s, "threads": threads, "device": args.device, "tiny": args.tiny,
                     "rss_source": "/proc/self/status VmRSS / VmHWM",
                     "model": "CTR dcn, one sparse field (the table), 1 dense field, dense/over MLP [16]"},
        "results": results,
        "meta_vs_cpu_build": comparison,
        "machine": machine_info(args.device),
    }
    if comparison:
        print(f"build on CPU first needs {comparison['cpu_build_over_meta']}x the memory of build on meta "
              f"({cpu['rows']:,} rows: {comparison['peak_minus_start_gib_cpu_build']} vs "
              f"{comparison['peak_minus_start_gib_meta']} GiB above start)")
    write_report(NAME, report, args.out_dir, args.device)
    return report


if __name__ == "__main__":
    main()
