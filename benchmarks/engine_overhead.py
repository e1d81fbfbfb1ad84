"""Engine overhead: distrec's training step vs a hand-written TorchRec loop, same model, same batches.

    python benchmarks/engine_overhead.py [--procs 1 2] [--batch-size 512] [--steps 40] [--rounds 5]

Four loops train the same CTR model (distrec.methods.ctr.recipe.build_model: DCN-v2 over an
EmbeddingBagCollection built on meta), sharded with the same sharder and an identical plan
(every table row-wise by default), fused row-wise Adagrad for the tables, DDP + Adam for the
dense part, from the same initial weights, on the same in-memory batches:

  distrec            TrainSession.train_epoch: DistrecTrainPipeline (TorchRec's
                     TrainPipelineSparseDist + a cross-rank NaN check before backward), row
                     accounting, progress meter, loss all-reduce and metrics.jsonl on log steps
  distrec_pipeline   DistrecTrainPipeline.progress() in a loop on the hand-written model below:
                     distrec's pipeline without TrainSession's bookkeeping (attributes overhead)
  torchrec_pipeline  hand-written: planner.collective_plan + DistributedModelParallel +
                     CombinedOptimizer, plain TrainPipelineSparseDist.progress() in a loop
  torchrec_loop      hand-written: zero_grad / forward / backward / step, no pipelining

Each round runs every loop over the same ``--steps`` batches (order rotated per round); the best
round counts (the machine may be shared). samples/s are global (all ranks), "cpu" is process CPU
seconds summed over ranks. The per-step local losses of all loops must agree (same computation):
the JSON records the largest difference. Writes benchmarks/results/engine_overhead.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    REPO,
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

NAME = "engine_overhead"
LOOPS = ("distrec", "distrec_pipeline", "torchrec_pipeline", "torchrec_loop")
DEFAULTS = dict(rows=100_000, num_sparse=26, num_dense=13, num_embeddings=100_000, batch_size=512,
                steps=40, rounds=8, embedding_dim=16, procs=[1, 2])
TINY = dict(rows=2_048, num_sparse=4, num_dense=3, num_embeddings=500, batch_size=64,
            steps=6, rounds=2, embedding_dim=8, procs=[1, 2])


# --- data and config ---------------------------------------------------------------------------


def write_data(out_dir: str, rows: int, num_sparse: int, num_dense: int, num_embeddings: int,
               rows_per_file: int | None = None, rows_per_row_group: int | None = None):
    """Criteo-like synthetic Parquet (one multi-hot field) at ``out_dir``; returns its schema."""
    from distrec.config.schema import SynthConfig
    from distrec.data.synth import write_synthetic

    group = rows_per_row_group or max(1, min(50_000, rows // 16))  # enough row groups for every rank
    cfg = SynthConfig(rows=rows, rows_per_file=rows_per_file or min(rows, 500_000), rows_per_row_group=group,
                      num_sparse=num_sparse, num_dense=num_dense, num_embeddings=num_embeddings,
                      multi_hot=1, num_users=max(10, min(100_000, rows // 20)))
    return write_synthetic(out_dir, cfg, progress=False)


def make_config(data_dir: str, run_root: str, batch_size: int, embedding_dim: int, device: str,
                sharding: str = "row_wise", extra: tuple[str, ...] = ()) -> dict:
    """A resolved CTR config (configs/ctr/base.yaml + overrides) as a plain dict for the workers."""
    from omegaconf import OmegaConf

    from distrec.methods import load_config

    cfg = load_config(str(REPO / "configs" / "ctr" / "base.yaml"), [
        f"run.output_dir={run_root}", "run.name=bench",
        f"data.train={data_dir}", "data.valid=null", "data.test=null", f"data.schema={data_dir}/schema.yaml",
        f"data.batch_size={batch_size}", "data.shuffle=false",
        "sharding.tables={}", f"sharding.default_types=[{sharding}]",
        f"model.embedding_dim={embedding_dim}",
        f"trainer.use_gpu={'true' if device == 'cuda' else 'false'}",
        "metrics.tensorboard=false", "trainer.checkpoint_every=0",
        *extra,
    ])
    return OmegaConf.to_container(cfg, resolve=True)


class MemoryFeed:
    """The DataFeed interface TrainSession.train_epoch uses, over batches already in memory."""

    def __init__(self, batches: list) -> None:
        self._batches = batches

    def steps(self, epoch: int) -> int:
        return len(self._batches)

    def batches(self, epoch: int, start_batch: int = 0):
        return iter(self._batches[start_batch:])


def local_batches(cfg, schema, rank: int, world: int, steps: int) -> list:
    """This rank's first ``steps`` batches of the training split (same on every call)."""
    from distrec.train.data_feed import DataFeed

    feed = DataFeed.open(cfg.data.train, schema, batch_size=cfg.data.batch_size, rank=rank, world_size=world,
                         seed=cfg.run.seed, shuffle=False, loader_workers=0, s3_endpoint_url=None)
    batches = list(islice(feed.batches(0), steps))
    if len(batches) < steps:
        raise ValueError(f"only {len(batches)} batches of {cfg.data.batch_size} rows per rank, need {steps}")
    return batches


# --- the loops (run inside each worker) --------------------------------------------------------


def distrec_session(cfg, schema, run_dir: str):
    from distrec.methods.ctr.recipe import build_model
    from distrec.train.distributed import seed_everything, worker_info
    from distrec.train.session import TrainSession

    worker = worker_info(cfg.trainer.use_gpu)
    seed_everything(cfg.run.seed)
    return TrainSession(cfg, build_model(cfg, schema), worker, run_dir, in_ray=False)


def handwritten_torchrec(cfg, schema, device):
    """What a TorchRec user writes by hand: same model class, planner, DMP, optimizers."""
    import torch
    import torch.distributed as dist
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.distributed.planner.types import ParameterConstraints
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter

    from distrec.methods.ctr.recipe import build_model
    from distrec.sparse.sharding import (
        AnyDeviceEmbeddingBagSharder,  # row-wise on CPU (TorchRec: CUDA only)
    )

    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg, schema)
    sharding_type = list(cfg.sharding.default_types)[0]
    fused = {"optimizer": EmbOptimType.EXACT_ROWWISE_ADAGRAD, "learning_rate": cfg.embedding_optimizer.lr,
             "eps": cfg.embedding_optimizer.eps}
    sharders = [AnyDeviceEmbeddingBagSharder(fused_params=fused)]
    tables = [t.name for t in model.sparse.embedding_bag_configs()]
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=dist.get_world_size(), compute_device=device.type),
        batch_size=cfg.data.batch_size,
        constraints={t: ParameterConstraints(sharding_types=[sharding_type]) for t in tables},
    )
    plan = planner.collective_plan(model, sharders, dist.GroupMember.WORLD)
    dmp = DistributedModelParallel(module=model, device=device, plan=plan, sharders=sharders)
    dense = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(dmp.named_parameters())),
                                  lambda params: torch.optim.Adam(params, lr=cfg.dense.lr))
    return dmp, plan, CombinedOptimizer([dmp.fused_optimizer, dense])


def plan_summary(plan) -> dict:
    return {
        f"{module}.{table}": [p.sharding_type, p.compute_kernel, list(p.ranks or [])]
        for module, tables in plan.plan.items() for table, p in tables.items()
    }


def overhead_worker(rank: int, cfg_dict: dict, run_dir: str, steps: int, rounds: int, threads: int) -> dict:
    import torch
    import torch.distributed as dist
    from omegaconf import OmegaConf
    from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

    from distrec.data.schema import FeatureSchema
    from distrec.train.pipeline import DistrecTrainPipeline
    from distrec.train.progress import ProgressMeter, configure_logging

    configure_logging()
    quiet()
    torch.set_num_threads(threads)
    cfg = OmegaConf.create(cfg_dict)
    world = dist.get_world_size()
    schema = FeatureSchema.load(cfg.data.schema)
    batches = local_batches(cfg, schema, rank, world, steps)

    session = distrec_session(cfg, schema, run_dir)
    device = session.worker.device
    pipe_dmp, plan, pipe_opt = handwritten_torchrec(cfg, schema, device)
    loop_dmp, _, loop_opt = handwritten_torchrec(cfg, schema, device)
    dp_dmp, _, dp_opt = handwritten_torchrec(cfg, schema, device)
    # same start for all three (load_state_dict consumes its dict: one fresh copy each)
    pipe_dmp.load_state_dict(session.dmp.state_dict())
    loop_dmp.load_state_dict(session.dmp.state_dict())
    dp_dmp.load_state_dict(session.dmp.state_dict())
    pipeline = TrainPipelineSparseDist(pipe_dmp, pipe_opt, device, execute_all_batches=True)
    distrec_pipeline = DistrecTrainPipeline(dp_dmp, dp_opt, device, None, cfg.trainer.nan_policy)

    losses: list = []
    session_progress = session.pipeline.progress

    def recorded_progress(it):  # keep distrec's per-step loss without touching its code path
        out = session_progress(it)
        losses.append(out["loss"])
        return out

    session.pipeline.progress = recorded_progress

    def run_distrec():
        losses.clear()
        progress = ProgressMeter(len(batches), cfg.data.batch_size * world, cfg.trainer.log_every, enabled=False)
        session.train_epoch(MemoryFeed(batches), progress)
        return [float(x) for x in losses]

    def run_pipeline(pipe=pipeline):
        out_losses, it = [], iter(batches)
        for _ in batches:
            out_losses.append(pipe.progress(it)["loss"])
        return [float(x) for x in out_losses]

    def run_loop():
        out_losses = []
        loop_dmp.train()
        for batch in batches:
            loop_opt.zero_grad()
            loss, out = loop_dmp(batch.to(device))
            loss.backward()
            loop_opt.step()
            out_losses.append(out["loss"])
        return [float(x) for x in out_losses]

    per_round: dict = {name: [] for name in LOOPS}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
        dist.barrier()

    loops = {"distrec": run_distrec, "distrec_pipeline": lambda: run_pipeline(distrec_pipeline),
             "torchrec_pipeline": run_pipeline, "torchrec_loop": run_loop}
    times = interleaved_rounds(loops,
                               rounds, sync=sync, on_result=lambda n, r, out: per_round[n].append(out))
    times = reduce_over_ranks(times)
    session.close()
    pipeline.detach()
    distrec_pipeline.detach()
    distrec_plan = plan_summary(session.plan)
    return {"times": times, "losses": per_round, "plans_equal": distrec_plan == plan_summary(plan),
            "plan": distrec_plan, "steps": len(batches), "real_rows": sum(b.num_real_rows for b in batches)}


# --- driver ------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--procs", type=int, nargs="+", default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="per process")
    parser.add_argument("--steps", type=int, default=None, help="steps per round")
    parser.add_argument("--num-embeddings", type=int, default=None, help="rows of each sparse field's table")
    parser.add_argument("--sharding", default="row_wise")
    args = parser.parse_args(argv)
    s = settings(args, TINY, DEFAULTS)
    s["rows"] = max(s["rows"], s["batch_size"] * max(s["procs"]) * s["steps"])

    with tempfile.TemporaryDirectory(prefix="distrec-bench-overhead-") as tmp:
        data = f"{tmp}/data"
        write_data(data, s["rows"], s["num_sparse"], s["num_dense"], s["num_embeddings"])
        cfg = make_config(data, f"{tmp}/runs", s["batch_size"], s["embedding_dim"], args.device, args.sharding)
        results = {}
        for world in s["procs"]:
            out = spawn(overhead_worker, world, cfg, f"{tmp}/runs/w{world}", s["steps"], s["rounds"],
                        worker_threads(world), backend=backend_for(args.device))
            results[world] = summarize(out, world, s["batch_size"])

    report = {
        "benchmark": NAME,
        "what": "distrec TrainSession step vs hand-written TorchRec loops; same model, plan, init, batches",
        "settings": {**s, "sharding": args.sharding, "device": args.device, "arch": cfg["model"]["arch"],
                     "dense_arch": cfg["model"]["dense_arch"], "over_arch": cfg["model"]["over_arch"],
                     "embedding_optimizer": cfg["embedding_optimizer"], "dense_optimizer": cfg["dense"],
                     "log_every": cfg["trainer"]["log_every"], "tiny": args.tiny,
                     "threads_per_process": {w: worker_threads(w) for w in s["procs"]}},
        "goal": "distrec samples/s >= 0.9 x hand-written TorchRec",
        "results": {f"{w}_procs": r for w, r in results.items()},
        "machine": machine_info(args.device),
    }
    for world, r in results.items():
        print_table(
            ["loop", "samples/s", "distrec ratio", "paired median", "cpu s", "cpu ratio", "spread"],
            [[n, m["samples_per_s"], m.get("distrec_ratio", 1.0), m.get("distrec_ratio_median_paired", 1.0),
              m["cpu_s"], m.get("distrec_cpu_ratio", 1.0), m["spread"]] for n, m in r["loops"].items()],
            title=f"{world} process(es), batch {s['batch_size']}/process, {r['steps']} steps/round, "
                  f"best of {s['rounds']} rounds; losses identical: {r['losses_match']} "
                  f"(max diff {r['max_loss_diff']:.2e}); same plan: {r['plans_equal']}",
        )
    print("distrec ratio = distrec samples/s / that loop's samples/s, best rounds (>1: distrec faster); paired "
          "median = median over rounds of the same ratio within a round; cpu ratio = that loop's CPU s / distrec's")
    write_report(NAME, report, args.out_dir, args.device)
    return report


def paired_median(times: dict, name: str) -> float:
    """Median over rounds of (that loop's wall / distrec's wall in the same round): the loops of a
    round run back to back, so slow spells of a shared machine cancel out more than in best-of."""
    import statistics

    ratios = [b / a for a, b in zip(times["distrec"]["walls"], times[name]["walls"])]
    return round(statistics.median(ratios), 3)


def summarize(out: list[dict], world: int, batch_size: int) -> dict:
    first = out[0]
    best = best_of(first["times"])
    samples = first["steps"] * batch_size * world
    loops = {}
    for name in LOOPS:
        b = best[name]
        loops[name] = {"samples_per_s": round(samples / b["wall_s"], 1), "wall_s": round(b["wall_s"], 4),
                       "cpu_s": round(b["cpu_s"], 4), "spread": b["spread"], "walls_s": b["walls_s"]}
    for name in LOOPS[1:]:
        loops[name]["distrec_ratio"] = round(best[name]["wall_s"] / best["distrec"]["wall_s"], 3)
        loops[name]["distrec_cpu_ratio"] = round(best[name]["cpu_s"] / best["distrec"]["cpu_s"], 3)
        loops[name]["distrec_ratio_median_paired"] = paired_median(first["times"], name)
    diff = 0.0
    for rank_out in out:
        ref = rank_out["losses"]["distrec"]
        for name in LOOPS[1:]:
            for a_round, b_round in zip(ref, rank_out["losses"][name]):
                diff = max(diff, max(abs(a - b) for a, b in zip(a_round, b_round)))
    return {
        "steps": first["steps"],
        "loops": loops,
        "distrec_vs_torchrec_pipeline": loops["torchrec_pipeline"]["distrec_ratio"],
        "distrec_vs_torchrec_loop": loops["torchrec_loop"]["distrec_ratio"],
        "distrec_vs_torchrec_pipeline_median_paired": loops["torchrec_pipeline"]["distrec_ratio_median_paired"],
        "distrec_vs_torchrec_loop_median_paired": loops["torchrec_loop"]["distrec_ratio_median_paired"],
        "distrec_cpu_vs_torchrec_pipeline": loops["torchrec_pipeline"]["distrec_cpu_ratio"],
        "distrec_cpu_vs_torchrec_loop": loops["torchrec_loop"]["distrec_cpu_ratio"],
        "losses_match": diff <= 1e-5,
        "max_loss_diff": diff,
        "losses_rank0": {n: first["losses"][n][0] for n in LOOPS},  # first round, rank 0
        "loss_first_last_round": [first["losses"]["distrec"][0][0], first["losses"]["distrec"][-1][-1]],
        "plans_equal": all(o["plans_equal"] for o in out),
        "real_rows_per_rank": [o["real_rows"] for o in out],  # every rank trained real rows, no padding
        "plan": first["plan"],
    }


if __name__ == "__main__":
    main()
