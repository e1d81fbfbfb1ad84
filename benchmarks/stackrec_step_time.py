"""StackRec step time by depth: sampled softmax (20 % of items) vs full softmax, two widths.

Why stacking can pay: a shallow stage is cheaper per step than the deep model, but only when
the residual blocks, not the output layer, dominate the step. This measures one training step
(forward, backward, Adam) of the dense part (NextItNet blocks + untied output layer; the item
lookup is a plain embedding here, the same for every depth) for several depths, both losses and
two widths (64: the output layer dominates; 256: the blocks do), in one process, interleaved.

    python benchmarks/stackrec_step_time.py            # table + benchmarks/results/stackrec_step_time.json
    python benchmarks/stackrec_step_time.py --tiny --out-dir /tmp/x   # seconds, for tests
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    add_common_args,
    best_of,
    interleaved_rounds,
    machine_info,
    print_table,
    settings,
    write_report,
)
from distrec.methods.stackrec.config import ModelConfig  # noqa: E402
from distrec.models.seqrec import SequenceDenseNet  # noqa: E402

NAME = "stackrec_step_time"
LOSSES = ("sampled", "full")
DEFAULTS = dict(depths=[2, 4, 8, 16], dims=[64, 256], num_items=20000, batch=64, length=50, rounds=3, steps=3)
TINY = dict(depths=[1, 2], dims=[8], num_items=200, batch=4, length=8, rounds=1, steps=1)


def make_step(blocks: int, loss: str, dim: int, num_items: int, batch: int, length: int):
    """A closure running one training step; returns the loss value."""
    torch.manual_seed(0)
    cfg = OmegaConf.structured(ModelConfig(blocks=blocks, embedding_dim=dim, sample_fraction=0.2))
    net = SequenceDenseNet(cfg, num_items, length + 1)
    for b in net.body.blocks:
        b.alpha.data.fill_(1.0)  # a trained deep model: every block on the path
    table = torch.nn.Embedding(num_items, dim)
    opt = torch.optim.Adam([*net.parameters(), *table.parameters()], lr=1e-3)
    ids = torch.randint(1, num_items, (batch, length + 1))
    mask = torch.ones(batch, length, dtype=torch.bool)

    def step() -> float:
        opt.zero_grad()
        hidden = net.hidden(table(ids[:, :-1]), mask).reshape(-1, dim)
        targets = ids[:, 1:].reshape(-1)
        value = net.head.loss(hidden, targets) if loss == "sampled" else net.head.full_loss(hidden, targets)
        value.backward()
        opt.step()
        return float(value)

    return step


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed round")
    args = parser.parse_args(argv)
    if args.device != "cpu":
        parser.error("stackrec_step_time measures the CPU dense step; the GPU suite does not run it")
    if args.threads:
        torch.set_num_threads(args.threads)
    s = settings(args, TINY, DEFAULTS)
    machine = machine_info(args.device)
    results, losses = [], {}
    for dim in s["dims"]:
        steps = {(loss, b): make_step(b, loss, dim, s["num_items"], s["batch"], s["length"])
                 for loss in LOSSES for b in s["depths"]}

        def run(key):
            return [steps[key]() for _ in range(s["steps"])]

        times = interleaved_rounds({key: (lambda key=key: run(key)) for key in steps}, s["rounds"],
                                   on_result=lambda key, r, out, dim=dim: losses.setdefault((dim, *key), out))
        best = best_of(times)
        deepest = max(s["depths"])
        for (loss, blocks), t in best.items():
            ms = 1000 * t["wall_s"] / s["steps"]
            deep_ms = 1000 * best[(loss, deepest)]["wall_s"] / s["steps"]
            results.append({"dim": dim, "loss": loss, "blocks": blocks, "step_ms": round(ms, 2),
                            "vs_deepest": round(ms / deep_ms, 3), "spread": t["spread"],
                            "first_loss": losses[(dim, loss, blocks)][0]})
    results.sort(key=lambda r: (r["dim"], r["loss"], r["blocks"]))
    print_table(["dim", "loss", "blocks", "ms/step", f"x {max(s['depths'])} blocks", "spread"],
                [[r["dim"], r["loss"], r["blocks"], r["step_ms"], r["vs_deepest"], r["spread"]] for r in results],
                title="one training step of the dense part (best of interleaved rounds)")
    sampled_vs_full = {
        f"{r['dim']}/{r['blocks']}": round(r["step_ms"] / next(
            f["step_ms"] for f in results if (f["dim"], f["loss"], f["blocks"]) == (r["dim"], "full", r["blocks"])), 3)
        for r in results if r["loss"] == "sampled"
    }
    print("sampled / full step time (dim/blocks):", sampled_vs_full)
    report = {"benchmark": NAME, "what": "ms per training step of NextItNet's dense part by depth, sampled "
              "(20 % of items) vs full softmax, two widths; ratios within one run are what to read",
              "settings": s, "machine": machine, "results": results, "sampled_vs_full": sampled_vs_full}
    write_report(NAME, report, args.out_dir, args.device)
    return report


if __name__ == "__main__":
    main()
