"""GPU/CPU factor of the dense step: the scaling benchmarks' dense networks in plain PyTorch.

    python benchmarks/gpu_factor.py                 # this CPU  -> results/gpu_factor.json
    python benchmarks/gpu_factor.py --device cuda   # a GPU     -> results/gpu_factor-gpu.json

Plain torch only (no TorchRec, no distrec), so it also runs on a GPU machine where the
distrec stack is not installed. For each case of scaling.py it builds the same dense network
as distrec.models.ctr.CtrDenseNet (DCN-v2: bottom MLP on 13 dense features, full-rank cross
layers over [bottom output, 27 pooled embeddings], top MLP, head) and times forward + backward
+ Adam on random inputs, including the gradient into the pooled embeddings. When both JSON
files exist, scaling.py divides the measured CPU per-sample time by the GPU one and uses that
as the MEASURED gpu_factor of the dense part (the embedding lookups and the engine's per-step
work are not in it: see the note in scaling.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in _common.py: no spinning threads on a shared CPU
FEATURES, NUM_DENSE = 27, 13  # user_id + 26 Criteo-like fields, 13 dense: scaling.py's data
CASES = {  # as in scaling.py CASES
    "data_bound": dict(dim=4, dense_arch=[8, 4], over_arch=[8], cross_layers=1, cpu_batch=4096),
    "compute_bound": dict(dim=16, dense_arch=[512, 256, 64], over_arch=[2048, 2048, 1024], cross_layers=2,
                          cpu_batch=256),
}


def dense_net(dim: int, dense_arch: list[int], over_arch: list[int], cross_layers: int):
    import torch
    from torch import nn

    def mlp(width: int, layers: list[int]) -> nn.Sequential:
        mods = []
        for out in layers:
            mods += [nn.Linear(width, out), nn.ReLU()]
            width = out
        return nn.Sequential(*mods)

    class Cross(nn.Module):  # DCN-v2 full rank: x_{l+1} = x0 * (W x_l + b) + x_l
        def __init__(self, width: int, n: int) -> None:
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(n))

        def forward(self, x0):
            x = x0
            for layer in self.layers:
                x = x0 * layer(x) + x
            return x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            width = dense_arch[-1] + FEATURES * dim
            self.bottom, self.cross = mlp(NUM_DENSE, dense_arch), Cross(width, cross_layers)
            self.top, self.head = mlp(width, over_arch), nn.Linear(over_arch[-1], 1)

        def forward(self, dense, pooled):
            x = self.cross(torch.cat([self.bottom(dense), pooled], dim=1))
            return self.head(self.top(x)).squeeze(-1)

    return Net()


def make_step(case: dict, batch: int, device):
    """(step function, parameter count): one forward + backward + Adam step of the case's network."""
    import torch

    torch.manual_seed(0)
    net = dense_net(case["dim"], case["dense_arch"], case["over_arch"], case["cross_layers"]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    dense = torch.randn(batch, NUM_DENSE, device=device)
    pooled = torch.randn(batch, FEATURES * case["dim"], device=device, requires_grad=True)
    labels = torch.randint(0, 2, (batch,), device=device).float()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(dense, pooled), labels)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in net.parameters())


def measure(case: dict, batch: int, device, steps: int, rounds: int) -> dict:
    import torch

    step, params = make_step(case, batch, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    best_wall = best_cpu = float("inf")
    for _ in range(rounds):
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        sync()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    samples = steps * batch
    return {"batch": batch, "steps": steps, "wall_s_per_sample": best_wall / samples,
            "samples_per_s": round(samples / best_wall, 1), "cpu_s": round(best_cpu, 4), "params": params}


def main(argv=None) -> dict:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--gpu-batch", type=int, default=4096, help="per-GPU batch (scaling.py's model batch)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out-dir", default=str(RESULTS))
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    results = {}
    for name, case in CASES.items():
        batch = args.gpu_batch if device.type == "cuda" else case["cpu_batch"]
        steps = args.steps or (2 if args.tiny else (50 if device.type == "cuda" else 5))
        if args.tiny:
            batch = min(batch, 64)
        results[name] = measure(case, batch, device, steps, 1 if args.tiny else args.rounds)
        print(f"{name:14} batch {batch:5}  {results[name]['samples_per_s']:>14,.0f} samples/s  "
              f"({results[name]['wall_s_per_sample'] * 1e6:.3f} us/sample, {results[name]['params']:,} params)")
    report = {
        "benchmark": "gpu_factor",
        "what": "forward + backward + Adam of scaling.py's dense networks in plain torch, random inputs",
        "settings": {"device": args.device, "cases": CASES, "gpu_batch": args.gpu_batch, "rounds": args.rounds,
                     "tiny": args.tiny, "threads": torch.get_num_threads()},
        "results": results,
        "machine": {"cpu_model": _cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "gpu": torch.cuda.is_available(),
                    "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
    }
    path = Path(args.out_dir) / f"gpu_factor{'-gpu' if args.device == 'cuda' else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return report


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
