"""Shared pieces of the benchmark scripts: machine description, JSON output, tables, a process
launcher for gloo/NCCL workers, and interleaved best-of-rounds timing.

Every script takes ``--tiny`` (seconds-long run used by tests/test_benchmarks.py), ``--out-dir``
(default benchmarks/results) and ``--device cpu|cuda``; on cuda the JSON name gets ``-gpu``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS_DIR = REPO / "benchmarks" / "results"
LOOPBACK = {
    "GLOO_SOCKET_IFNAME": "lo",
    "MASTER_ADDR": "127.0.0.1",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
for _key, _value in LOOPBACK.items():
    os.environ.setdefault(_key, _value)
# Idle OpenMP threads sleep instead of spinning: on a shared machine spinning threads burned
# 5-10x the CPU for the same work here (and made 2-thread timings swing by 10x). Set before
# torch loads in any benchmark process; OMP_WAIT_POLICY=ACTIVE in the environment overrides it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The worker processes fork from one server that imported these once (seconds each otherwise).
PRELOAD = ["torch", "torchrec", "fbgemm_gpu", "distrec.methods.ctr.recipe", "distrec.train.session"]


# --- command line and output ------------------------------------------------------------------


def add_common_args(parser) -> None:
    parser.add_argument("--tiny", action="store_true", help="seconds-long run for the test suite")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: GPU workers with NCCL; the JSON name gets a -gpu suffix")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (best kept)")


def quiet() -> None:
    """Keep the benchmark's table readable: the libraries' deprecation chatter off."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("torch.fx._symbolic_trace", "torchrec", "fbgemm_gpu", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)


def backend_for(device: str) -> str:
    """gloo on CPU; on CUDA, NCCL for CUDA tensors plus gloo for the few CPU-tensor collectives
    distrec makes (loss/row counts, the NaN check), which a pure "nccl" group refuses."""
    return "cpu:gloo,cuda:nccl" if device == "cuda" else "gloo"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_info(device: str = "cpu") -> dict:
    """What produced the numbers: CPU, cores, memory, versions, GPU (if any), load."""
    import pyarrow
    import torch

    info = {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": _mem_total_gib(),
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyarrow": pyarrow.__version__,
        "gpu": torch.cuda.is_available(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    for module in ("torchrec", "fbgemm_gpu", "ray"):
        try:
            info[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - a missing optional package is just not listed
            info[module] = None
    if info["gpu"]:
        info["gpu_name"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def write_report(name: str, report: dict, out_dir: str, device: str) -> Path:
    """``<out_dir>/<name>.json`` (``<name>-gpu.json`` on cuda), with the load at the end."""
    report.setdefault("machine", {})["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    path = Path(out_dir) / f"{name}{'-gpu' if device == 'cuda' else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def print_table(headers: list[str], rows: list[list], title: str | None = None) -> None:
    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    for r in cells:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


# --- worker processes -------------------------------------------------------------------------


def settings(args, tiny: dict, defaults: dict) -> dict:
    """The run's settings: the tiny or default set, with every option given on the command line."""
    chosen = dict(tiny if args.tiny else defaults)
    for key in chosen:
        if getattr(args, key, None) is not None:
            chosen[key] = getattr(args, key)
    return chosen


def spawn(fn, world_size: int, *args, backend: str = "gloo", timeout_s: float = 1800):
    """``fn(rank, *args)`` in ``world_size`` processes joined by a process group on 127.0.0.1;
    they fork from a forkserver that imported torch/torchrec/distrec once, so each call costs
    well under a second after the first."""
    from distrec.train.local_spawn import spawn as spawn_workers

    return spawn_workers(fn, world_size, *args, timeout_s=timeout_s, backend=backend,
                         start_method="forkserver", preload=PRELOAD, child_setup=quiet)


def worker_threads(world_size: int) -> int:
    """Intra-op threads per worker: the usable cores shared evenly (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // world_size)


# --- timing -----------------------------------------------------------------------------------


def timed(fn, sync=None) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of ``fn()``; ``sync()`` runs before each clock
    read (a barrier across ranks, a CUDA synchronize)."""
    if sync:
        sync()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if sync:
        sync()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def interleaved_rounds(methods: dict, rounds: int, sync=None, on_result=None, warmup: int = 1) -> dict:
    """Run every method once per round, in an order rotated each round (fair when other processes
    share the machine); returns each method's per-round wall and process-CPU seconds. The first
    ``warmup`` rounds run untimed. ``on_result(name, round, result)`` sees every run's result
    (warm-up rounds included, numbered from 0)."""
    names = list(methods)
    times = {n: {"walls": [], "cpus": []} for n in names}
    for r in range(warmup + rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            wall, cpu, out = timed(methods[name], sync)
            if r >= warmup:
                times[name]["walls"].append(wall)
                times[name]["cpus"].append(cpu)
            if on_result:
                on_result(name, r, out)
    return times


def reduce_over_ranks(times: dict) -> dict:
    """Per round: wall = the slowest rank's, CPU = the sum over ranks (a collective)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return times
    names = list(times)
    walls = torch.tensor([times[n]["walls"] for n in names], dtype=torch.float64)
    cpus = torch.tensor([times[n]["cpus"] for n in names], dtype=torch.float64)
    if dist.get_backend() == "nccl":  # a pure NCCL group takes CUDA tensors only
        walls, cpus = walls.cuda(), cpus.cuda()
    dist.all_reduce(walls, op=dist.ReduceOp.MAX)
    dist.all_reduce(cpus, op=dist.ReduceOp.SUM)
    return {n: {"walls": walls[i].tolist(), "cpus": cpus[i].tolist()} for i, n in enumerate(names)}


def best_of(times: dict) -> dict:
    """Each method's best round (wall and CPU separately) and the spread of its walls."""
    return {
        n: {"wall_s": min(t["walls"]), "cpu_s": min(t["cpus"]), "spread": spread(t["walls"]),
            "walls_s": [round(w, 4) for w in t["walls"]]}
        for n, t in times.items()
    }


def spread(walls: list[float]) -> float:
    """(worst - best) / best of a method's rounds: how noisy its timing was."""
    return round((max(walls) - min(walls)) / min(walls), 3) if walls else 0.0
