"""StackRec step time by depth: sampled softmax (20 % of items) vs full softmax.

Why stacking can pay: a shallow stage is cheaper per step than the deep model, but only when
the output layer does not dominate the step. This measures one training step (forward, backward,
Adam) of the dense part (NextItNet blocks + untied output layer; the item lookup is a plain
embedding here, the same for every depth) for several depths, with both losses, in one process.

    python benchmarks/stackrec_step_time.py                 # table + benchmarks/results/stackrec_step_time.json
    python benchmarks/stackrec_step_time.py --tiny --out /tmp/x.json   # seconds, for tests
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from omegaconf import OmegaConf

from distrec.config.stackrec import ModelConfig
from distrec.models.seqrec import SequenceDenseNet

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "stackrec_step_time.json")


def step_seconds(blocks: int, loss: str, num_items: int, batch: int, length: int, dim: int, reps: int) -> float:
    torch.manual_seed(0)
    cfg = OmegaConf.structured(ModelConfig(blocks=blocks, embedding_dim=dim, sample_fraction=0.2))
    net = SequenceDenseNet(cfg, num_items, length + 1)
    for b in net.body.blocks:
        b.alpha.data.fill_(1.0)
    table = torch.nn.Embedding(num_items, dim)
    opt = torch.optim.Adam([*net.parameters(), *table.parameters()], lr=1e-3)
    ids = torch.randint(1, num_items, (batch, length + 1))
    mask = torch.ones(batch, length, dtype=torch.bool)

    def step() -> None:
        opt.zero_grad()
        hidden = net.hidden(table(ids[:, :-1]), mask).reshape(-1, dim)
        targets = ids[:, 1:].reshape(-1)
        value = net.head.loss(hidden, targets) if loss == "sampled" else net.head.full_loss(hidden, targets)
        value.backward()
        opt.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - start) / reps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.tiny:
        depths, items, batch, length, dim, reps = [1, 2], 200, 4, 8, 8, 2
    else:
        depths, items, batch, length, dim, reps = [2, 4, 8, 16], 20000, 64, 50, 64, 5
    rows = []
    for loss in ("sampled", "full"):
        for blocks in depths:
            s = step_seconds(blocks, loss, items, batch, length, dim, reps)
            rows.append({"loss": loss, "blocks": blocks, "step_ms": 1000 * s})
            print(f"{loss:8s} blocks {blocks:3d}: {1000 * s:8.1f} ms/step", flush=True)
    deepest = max(depths)
    for loss in ("sampled", "full"):
        by_depth = {r["blocks"]: r["step_ms"] for r in rows if r["loss"] == loss}
        ratios = ", ".join(f"{b}: {by_depth[b] / by_depth[deepest]:.2f}" for b in depths)
        print(f"{loss}: step time relative to {deepest} blocks -> {ratios}")
    payload = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, {args.threads} torch threads",
               "num_items": items, "batch": batch, "length": length, "dim": dim, "sample_fraction": 0.2,
               "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
