"""Scaling: 1 vs 2 workers on this machine (data-bound and compute-bound cases), and an analytic
model for N GPUs built from the measured per-sample cost.

    python benchmarks/scaling.py [--workers 1 2] [--gpu-factor 100] [--bandwidth-gbs 25]

Measured here (distrec's TrainSession.train_epoch, gloo, row-wise tables, fused row-wise
Adagrad, DDP + Adam; per-worker batch fixed, so 2 workers train 2x the samples per step):

  data_bound     a tiny model (dim 4, 8-wide MLPs) on a big batch (4096/worker), reading the
                 Parquet split through distrec's DataFeed every epoch; also the feed alone
                 (read only) to show how much of the step is data
  compute_bound  a wide dense MLP (over_arch 2048-2048-1024) on in-memory batches

Global samples/s = all workers' samples / the slowest worker's wall time (best of --rounds).
With 2 cores, 1 worker uses 2 intra-op threads and 2 workers 1 thread each: the same cores, so
"speedup" here shows the engine's communication and synchronisation cost, not more hardware.

The model for N GPUs (written to the JSON and to results/scaling.md) is, per step and GPU:
  step_s(N) = max(compute, data, comm)
  compute   = batch x GPU seconds per sample, estimated from what was measured:
              with results/gpu_factor-gpu.json (benchmarks/gpu_factor.py run on a GPU):
                dense network's per-sample time on that GPU                         [MEASURED there]
                + (distrec step's per-sample time here - the same dense network's per-sample
                   time here, in plain torch)                                         [MEASURED here]
                  / gpu_factor                                                        [ASSUMED]
              i.e. only the non-dense part (embedding lookups, engine) is scaled by an assumption;
              without that file: distrec step's per-sample time here / gpu_factor     [ASSUMED]
  data      = batch / (measured reader rows/s of one process here)                 [assumes same CPU/GPU host]
  comm      = (all-to-all bytes + dense all-reduce bytes) x (N-1)/N / bandwidth    [bandwidth ASSUMED]
  all-to-all bytes = batch x sparse features x dim x 4 bytes x 2 (forward + backward)
  all-reduce bytes = 2 x dense parameters x 4 bytes (ring all-reduce)
  global samples/s = N x batch / step_s(N); "no overlap" bound uses compute + data + comm.
Writes benchmarks/results/scaling.json and scaling.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import engine_overhead, gpu_factor  # noqa: E402
from benchmarks._common import (  # noqa: E402
    add_common_args,
    backend_for,
    best_of,
    interleaved_rounds,
    machine_info,
    print_table,
    quiet,
    reduce_over_ranks,
    settings,
    spawn,
    worker_threads,
    write_report,
)

NAME = "scaling"
DEFAULTS = dict(workers=[1, 2], rounds=4, rows=196_608, num_sparse=26, num_dense=13, num_embeddings=20_000,
                data_batch=4096, compute_batch=256, compute_steps=8,
                gpu_factor=100.0, bandwidth_gbs=25.0, model_batch=4096, model_gpus=[1, 2, 4, 8, 16, 32, 64, 128])
TINY = dict(workers=[1, 2], rounds=1, rows=4_096, num_sparse=4, num_dense=3, num_embeddings=500,
            data_batch=512, compute_batch=32, compute_steps=3,
            gpu_factor=100.0, bandwidth_gbs=25.0, model_batch=4096, model_gpus=[1, 2, 8])
CASES = {
    # name: (model overrides, per-worker batch key, feed)
    "data_bound": (["model.embedding_dim=4", "model.dense_arch=[8,4]", "model.over_arch=[8]",
                    "model.cross_layers=1"], "data_batch", "parquet"),
    "compute_bound": (["model.embedding_dim=16", "model.dense_arch=[512,256,64]",
                       "model.over_arch=[2048,2048,1024]", "model.cross_layers=2"], "compute_batch", "memory"),
}
TINY_OVERRIDES = {"compute_bound": ["model.dense_arch=[64,16]", "model.over_arch=[256,128]"]}


def scaling_worker(rank: int, cases: dict, rounds: int, steps: int, threads: int, run_root: str,
                   dense_reference: bool) -> dict:
    import torch
    import torch.distributed as dist
    from omegaconf import OmegaConf

    from distrec.data.schema import FeatureSchema
    from distrec.train.data_feed import DataFeed
    from distrec.train.progress import ProgressMeter, configure_logging

    configure_logging()
    quiet()
    torch.set_num_threads(threads)
    world = dist.get_world_size()
    out = {}
    for name, (cfg_dict, feed_kind) in cases.items():
        cfg = OmegaConf.create(cfg_dict)
        schema = FeatureSchema.load(cfg.data.schema)
        session = engine_overhead.distrec_session(cfg, schema, f"{run_root}/{name}")
        if feed_kind == "parquet":
            feed = DataFeed.open(cfg.data.train, schema, batch_size=cfg.data.batch_size, rank=rank, world_size=world,
                                 seed=cfg.run.seed, shuffle=False, loader_workers=0, s3_endpoint_url=None)
        else:
            feed = engine_overhead.MemoryFeed(engine_overhead.local_batches(cfg, schema, rank, world, steps))

        def train():
            progress = ProgressMeter(feed.steps(0), cfg.data.batch_size * world, cfg.trainer.log_every, enabled=False)
            session.train_epoch(feed, progress)
            return session.last_epoch_rows  # real rows trained by all ranks

        methods = {"train": train}
        if feed_kind == "parquet":
            methods["read_only"] = lambda: sum(b.num_real_rows for b in feed.batches(0))
        dense_samples = 0
        if dense_reference and world == 1 and name in gpu_factor.CASES:  # dense network alone, same rounds
            case = gpu_factor.CASES[name]
            dense_step, _ = gpu_factor.make_step(case, case["cpu_batch"], session.worker.device)
            dense_steps = max(1, 2048 // case["cpu_batch"])
            dense_samples = dense_steps * case["cpu_batch"]

            def dense_only():
                for _ in range(dense_steps):
                    dense_step()
                if session.worker.device.type == "cuda":
                    torch.cuda.synchronize()
                return dense_samples

            methods["dense_only"] = dense_only
        rows: dict = {}
        times = interleaved_rounds(methods, rounds, sync=dist.barrier,
                                   on_result=lambda n, r, v: rows.setdefault(n, v))
        times = reduce_over_ranks(times)
        dense_params = sum(p.numel() for p in session.dmp.module.dense.parameters())
        session.close()
        out[name] = {"times": times, "train_rows": rows["train"], "read_rows": rows.get("read_only"),
                     "dense_samples": dense_samples,
                     "dense_params": dense_params, "features": len(schema.sparse_names),
                     "dim": cfg.model.embedding_dim, "batch_per_worker": cfg.data.batch_size}
    return out


def gpu_model(gpu_s_per_sample: float, reader_rows_s: float, features: int, dim: int, dense_params: int,
              batch: int, bandwidth_gbs: float, gpus: list[int]) -> list[dict]:
    bw = bandwidth_gbs * 1e9
    rows = []
    for n in gpus:
        share = (n - 1) / n
        compute = batch * gpu_s_per_sample
        data = batch / reader_rows_s
        a2a_bytes = batch * features * dim * 4 * 2
        allreduce_bytes = 2 * dense_params * 4
        comm = (a2a_bytes + allreduce_bytes) * share / bw
        step = max(compute, data, comm)
        bound = max(("compute", compute), ("data", data), ("comm", comm), key=lambda kv: kv[1])[0]
        rows.append({"gpus": n, "compute_ms": round(compute * 1e3, 3), "data_ms": round(data * 1e3, 3),
                     "comm_ms": round(comm * 1e3, 3), "a2a_mb_per_step": round(a2a_bytes / 1e6, 2),
                     "allreduce_mb_per_step": round(allreduce_bytes / 1e6, 2), "step_ms": round(step * 1e3, 3),
                     "bound_by": bound, "global_samples_per_s": round(n * batch / step),
                     "global_samples_per_s_no_overlap": round(n * batch / (compute + data + comm)),
                     "efficiency_vs_linear": round((n * batch / step) / (n * batch / max(compute, data)), 3)})
    return rows


def gpu_per_sample(args, s: dict, cpu_per_sample: dict, dense_cpu_per_sample: dict) -> dict:
    """Per case: estimated GPU seconds per sample of the training step, and how it was made.

    On cuda the per-sample time is the GPU's own. With results/gpu_factor-gpu.json (gpu_factor.py
    on a GPU), each case's dense network is timed here now in plain torch: the GPU's measured
    dense time plus the rest of this machine's per-sample time (embeddings, engine) divided by the
    ASSUMED gpu_factor (the dense network timed on this CPU in the same rounds as the distrec step).
    Otherwise (or in tiny mode, or with --gpu-factor): this machine's
    per-sample time / gpu_factor, all ASSUMED."""
    factor = s["gpu_factor"]
    if args.device == "cuda":
        return {n: {"gpu_s_per_sample": t, "source": "MEASURED on this GPU (distrec step)"}
                for n, t in cpu_per_sample.items()}
    gpu_file = gpu_factor.RESULTS / "gpu_factor-gpu.json"
    if args.gpu_factor is not None or args.tiny or not gpu_file.is_file() or not dense_cpu_per_sample:
        return {n: {"gpu_s_per_sample": t / factor,
                    "source": f"ASSUMED: this machine's per-sample time / gpu_factor {factor}"}
                for n, t in cpu_per_sample.items()}
    import json

    gpu = json.loads(gpu_file.read_text())
    out = {}
    for name, total in cpu_per_sample.items():
        dense_cpu_s = dense_cpu_per_sample[name]
        g = gpu["results"][name]
        rest = max(0.0, total - dense_cpu_s)
        out[name] = {
            "gpu_s_per_sample": g["wall_s_per_sample"] + rest / factor,
            "dense_gpu_us_per_sample": round(g["wall_s_per_sample"] * 1e6, 4),
            "dense_cpu_us_per_sample": round(dense_cpu_s * 1e6, 3),
            "distrec_cpu_us_per_sample": round(total * 1e6, 3),
            "rest_cpu_us_per_sample": round(rest * 1e6, 3),
            "dense_gpu_speedup": round(dense_cpu_s / g["wall_s_per_sample"], 1),
            "source": f"dense network MEASURED on {gpu['machine']['gpu_name']} at batch {g['batch']} "
                      f"(results/gpu_factor-gpu.json, plain torch) + the rest of this machine's per-sample "
                      f"time (distrec step minus the dense network, both MEASURED here) / gpu_factor {factor} "
                      f"(ASSUMED)",
        }
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--workers", type=int, nargs="+", default=None)
    parser.add_argument("--gpu-factor", type=float, default=None,
                        help="ASSUMED speed-up of one GPU over this whole machine for the per-sample work "
                             "not measured on a GPU (default 100)")
    parser.add_argument("--bandwidth-gbs", type=float, default=None, help="ASSUMED network GB/s per GPU")
    parser.add_argument("--model-batch", type=int, default=None, help="per-GPU batch in the model")
    args = parser.parse_args(argv)
    quiet()
    s = settings(args, TINY, DEFAULTS)

    measured: dict = {}
    with tempfile.TemporaryDirectory(prefix="distrec-bench-scaling-") as tmp:
        data = f"{tmp}/data"
        engine_overhead.write_data(data, s["rows"], s["num_sparse"], s["num_dense"], s["num_embeddings"],
                                   rows_per_row_group=max(1, min(16_384, s["rows"] // 8)))
        cases = {}
        for name, (overrides, batch_key, feed) in CASES.items():
            extra = overrides + (TINY_OVERRIDES.get(name, []) if args.tiny else [])
            cfg = engine_overhead.make_config(data, f"{tmp}/runs", s[batch_key], 16, args.device, extra=tuple(extra))
            cases[name] = (cfg, feed)
        for world in s["workers"]:
            out = spawn(scaling_worker, world, cases, s["rounds"], s["compute_steps"], worker_threads(world),
                        f"{tmp}/runs/w{world}", not args.tiny and args.device == "cpu",
                        backend=backend_for(args.device))
            measured[world] = out[0]

    results: dict = {}
    for name in CASES:
        per_world = {}
        for world, out in measured.items():
            case = out[name]
            best = best_of(case["times"])
            train = best["train"]
            entry = {"global_samples_per_s": round(case["train_rows"] / train["wall_s"], 1),
                     "wall_s": round(train["wall_s"], 4), "cpu_s": round(train["cpu_s"], 4),
                     "spread": train["spread"], "samples": case["train_rows"],
                     "threads_per_worker": worker_threads(world),
                     "wall_s_per_sample": train["wall_s"] / case["train_rows"],
                     "cpu_s_per_sample": train["cpu_s"] / case["train_rows"]}
            if "dense_only" in best:
                entry["dense_only_wall_s_per_sample"] = best["dense_only"]["wall_s"] / case["dense_samples"]
            if "read_only" in best:
                entry["read_only_rows_per_s"] = round(case["read_rows"] / best["read_only"]["wall_s"], 1)
                entry["read_share_of_train_time"] = round(best["read_only"]["wall_s"] / train["wall_s"], 3)
            per_world[f"{world}_workers"] = entry
        first = measured[s["workers"][0]][name]
        base = per_world[f"{s['workers'][0]}_workers"]["global_samples_per_s"]
        for entry in per_world.values():
            entry["speedup_vs_1_worker"] = round(entry["global_samples_per_s"] / base, 3)
        results[name] = {"measured": per_world, "dense_params": first["dense_params"], "features": first["features"],
                         "dim": first["dim"], "batch_per_worker": first["batch_per_worker"]}

    one = f"{s['workers'][0]}_workers"
    reader_rows_s = results["data_bound"]["measured"][one].get("read_only_rows_per_s")
    dense_cpu = {n: r["measured"][one]["dense_only_wall_s_per_sample"] for n, r in results.items()
                 if "dense_only_wall_s_per_sample" in r["measured"][one]}
    estimates = gpu_per_sample(args, s, {n: r["measured"][one]["wall_s_per_sample"] for n, r in results.items()},
                               dense_cpu if len(dense_cpu) == len(results) else {})
    for name, r in results.items():
        r["gpu_compute_estimate"] = estimates[name]
        r["gpu_model"] = gpu_model(
            gpu_s_per_sample=estimates[name]["gpu_s_per_sample"], reader_rows_s=reader_rows_s,
            features=r["features"], dim=r["dim"], dense_params=r["dense_params"], batch=s["model_batch"],
            bandwidth_gbs=s["bandwidth_gbs"], gpus=s["model_gpus"])

    model_doc = {
        "formula": "step_s(N) = max(compute, data, comm); global samples/s = N x batch / step_s(N)",
        "compute": "batch x estimated GPU s per sample (per case: results.<case>.gpu_compute_estimate.source): "
                   "dense network MEASURED on a GPU + (distrec per-sample time here - dense network's here) / "
                   "gpu_factor, or, without a GPU measurement, distrec per-sample time here / gpu_factor",
        "data": "batch / read_only_rows_per_s (MEASURED here: one process reading the Parquet split through "
                "distrec's DataFeed; ASSUMES a GPU host gives each GPU worker a core as fast as one here)",
        "comm": "(all-to-all bytes + all-reduce bytes) x (N-1)/N / bandwidth (ASSUMED); all-to-all bytes = "
                "batch x sparse features x dim x 4 bytes x 2 (forward + backward, pooled embeddings); "
                "all-reduce bytes = 2 x dense params x 4 (ring)",
        "gpu_compute": {n: {k: v for k, v in r["gpu_compute_estimate"].items()} for n, r in results.items()},
        "assumed": {"gpu_factor": s["gpu_factor"], "bandwidth_gbs_per_gpu": s["bandwidth_gbs"],
                    "batch_per_gpu": s["model_batch"],
                    "status": ("per-sample cost MEASURED on this GPU; bandwidth still ASSUMED"
                               if args.device == "cuda" else
                               "gpu_factor (the speed-up of everything but the dense network), bandwidth "
                               "and batch are ASSUMPTIONS until measured on a GPU machine with the distrec "
                               "stack (benchmarks/gpu_suite.sh)")},
        "measured": {"reader_rows_per_s_one_process": reader_rows_s,
                     **{f"{n}_wall_s_per_sample_1_worker": r["measured"][one]["wall_s_per_sample"]
                        for n, r in results.items()}},
        "not_modelled": "embedding lookup cost growing with table size, load imbalance across shards, "
                        "pipeline overlap limits, stragglers, input all-to-all of ids (small next to pooled embeddings)",
    }
    report = {
        "benchmark": NAME,
        "what": "1 vs 2 distrec workers on this machine (global samples/s) and an analytic N-GPU model",
        "settings": {**s, "device": args.device, "tiny": args.tiny,
                     "cases": {n: {"overrides": o, "batch_per_worker": s[b], "feed": f} for n, (o, b, f) in CASES.items()},
                     "sharding": "row_wise", "threads_per_worker": {w: worker_threads(w) for w in s["workers"]}},
        "results": results,
        "gpu_model": model_doc,
        "machine": machine_info(args.device),
    }
    for name, r in results.items():
        print_table(["workers", "samples/s", "speedup", "cpu s", "spread", "read-only rows/s"],
                    [[k, m["global_samples_per_s"], m["speedup_vs_1_worker"], m["cpu_s"], m["spread"],
                      m.get("read_only_rows_per_s", "-")] for k, m in r["measured"].items()],
                    title=f"{name}: batch {r['batch_per_worker']}/worker, dim {r['dim']}, "
                          f"{r['dense_params']:,} dense params, best of {s['rounds']}")
    for name, r in results.items():
        print_table(["GPUs", "compute ms", "data ms", "comm ms", "bound", "samples/s", "no overlap"],
                    [[m["gpus"], m["compute_ms"], m["data_ms"], m["comm_ms"], m["bound_by"],
                      m["global_samples_per_s"], m["global_samples_per_s_no_overlap"]] for m in r["gpu_model"]],
                    title=f"MODEL {name}: batch {s['model_batch']}/GPU, "
                          f"{r['gpu_compute_estimate']['gpu_s_per_sample'] * 1e6:.3f} us/sample on a GPU "
                          f"({r['gpu_compute_estimate']['source'].split(':')[0].split(' (')[0]}), "
                          f"{s['bandwidth_gbs']} GB/s (ASSUMED)")
    path = write_report(NAME, report, args.out_dir, args.device)
    path.with_suffix(".md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    s, doc = report["settings"], report["gpu_model"]
    lines = [f"# Scaling ({report['machine']['cpu_model']}, {report['machine']['cpus']} cpus, "
             f"device {s['device']})", "",
             "## Measured on this machine (global samples/s, best of rounds)", "",
             "| case | workers | samples/s | speedup | CPU s | spread |", "|---|---|---|---|---|---|"]
    for name, r in report["results"].items():
        for k, m in r["measured"].items():
            lines.append(f"| {name} | {k.split('_')[0]} | {m['global_samples_per_s']:,.0f} | "
                         f"{m['speedup_vs_1_worker']} | {m['cpu_s']} | {m['spread']} |")
    lines += ["", "## Model for N GPUs", "", f"`{doc['formula']}`", "",
              f"- compute: {doc['compute']}", f"- data: {doc['data']}", f"- comm: {doc['comm']}",
              f"- **ASSUMED** (not measured): bandwidth = {doc['assumed']['bandwidth_gbs_per_gpu']} GB/s per GPU, "
              f"batch = {doc['assumed']['batch_per_gpu']} per GPU; {doc['assumed']['status']}",
              *[f"- GPU compute, {n}: {f['gpu_s_per_sample'] * 1e6:.3f} us/sample = {f['source']}"
                + (f" ({f['dense_gpu_us_per_sample']} + ({f['distrec_cpu_us_per_sample']} - "
                   f"{f['dense_cpu_us_per_sample']}) / {doc['assumed']['gpu_factor']} us)"
                   if "dense_gpu_us_per_sample" in f else "")
                for n, f in doc["gpu_compute"].items()],
              "- **MEASURED** here: " + ", ".join(f"{k} = {v:.3g}" for k, v in doc["measured"].items() if v),
              f"- not modelled: {doc['not_modelled']}", ""]
    for name, r in report["results"].items():
        lines += [f"### {name}", "", "| GPUs | compute ms | data ms | comm ms | bound by | samples/s | no overlap |",
                  "|---|---|---|---|---|---|---|"]
        for m in r["gpu_model"]:
            lines.append(f"| {m['gpus']} | {m['compute_ms']} | {m['data_ms']} | {m['comm_ms']} | {m['bound_by']} | "
                         f"{m['global_samples_per_s']:,} | {m['global_samples_per_s_no_overlap']:,} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
