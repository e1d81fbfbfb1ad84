"""Conure vs the baselines: per-task metrics after each stage (markdown + JSON + a PNG heat map
task × stage per strategy), parameter counts, and whether old tasks' probe outputs stayed
bit-identical."""

from __future__ import annotations

import io
import json
import math
import posixpath

import torch

from distrec.methods.conure.tasks import ConureState
from distrec.storage import atomic_open, filesystem, write_text_atomic
from distrec.train.plots import figure_png

MAIN_METRIC = {"next_item": "mrr@5", "item_rec": "mrr@5", "profile": "accuracy"}


def strategy_table(state: ConureState) -> dict:
    """{task: {stage: main metric}} plus the task kinds, from one run's registry."""
    kinds = {t["name"]: t["kind"] for t in state.tasks}
    table = {name: {} for name in kinds}
    for record in state.history:
        for name, metrics in record["metrics"].items():
            table[name][record["stage"]] = metrics.get(MAIN_METRIC[kinds[name]], math.nan)
    return {"kinds": kinds, "main_metric": table, "params": state.params,
            "metrics": {r["stage"]: r["metrics"] for r in state.history}}


def probes_unchanged(run_dir: str, state: ConureState) -> dict[str, bool | None]:
    """Per task: are its probe outputs after the last stage bit-identical to those after its own?
    None where the last stage did not re-evaluate it (``separate``: independent models)."""
    out = {}
    last = len(state.history)
    for stage, task in enumerate(state.tasks, start=1):
        first = _load(posixpath.join(run_dir, "probes", f"stage-{stage:02d}", f"{task['name']}.pt"))
        final = _load(posixpath.join(run_dir, "probes", f"stage-{last:02d}", f"{task['name']}.pt"))
        out[task["name"]] = None if final is None else first is not None and torch.equal(first, final)
    return out


def _load(path: str):
    fs, p = filesystem(path)
    if not fs.exists(p):
        return None
    return torch.load(io.BytesIO(fs.cat_file(p)))


def build_report(runs: dict[str, tuple[str, ConureState]]) -> dict:
    """``runs[strategy] = (run_dir, state)`` -> the report as a JSON-able dict."""
    report = {"strategies": {}}
    for strategy, (run_dir, state) in runs.items():
        entry = strategy_table(state)
        entry["run_dir"] = run_dir
        entry["old_task_outputs_bit_identical"] = probes_unchanged(run_dir, state)
        report["strategies"][strategy] = entry
    return report


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def report_markdown(report: dict) -> str:
    lines = ["# Conure: per-task metric after each stage", "",
             "Metric: MRR@5 for next_item / item_rec tasks, accuracy for profile tasks; stage k = "
             "after learning task k.", ""]
    for strategy, entry in report["strategies"].items():
        table = entry["main_metric"]
        stages = sorted({s for row in table.values() for s in row})
        lines += [f"## {strategy}", "", "| task | " + " | ".join(f"stage {s}" for s in stages)
                  + " | outputs bit-identical |", "|---" * (len(stages) + 2) + "|"]
        for name, row in table.items():
            same = entry["old_task_outputs_bit_identical"].get(name)
            lines.append(f"| {name} | " + " | ".join(_fmt(row.get(s)) for s in stages)
                         + f" | {'n/a' if same is None else 'yes' if same else 'no'} |")
        params = entry["params"]
        lines += ["", f"Parameters: {params.get('total', 0):,} in total"]
        if "conv_weights_per_task" in params:
            used = ", ".join(f"{k} {v:,}" for k, v in params["conv_weights_per_task"].items())
            lines.append(f"(conv weights owned per task: {used}; still free: {params['conv_weights_free']:,})")
        lines.append("")
    return "\n".join(lines)


def heatmap_png(report: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    strategies = list(report["strategies"])
    fig, axes = plt.subplots(1, len(strategies), figsize=(4.5 * len(strategies), 3.5), squeeze=False)
    for ax, strategy in zip(axes[0], strategies):
        table = report["strategies"][strategy]["main_metric"]
        tasks = list(table)
        stages = sorted({s for row in table.values() for s in row})
        grid = np.array([[table[t].get(s, np.nan) for s in stages] for t in tasks], dtype=float)
        # colour per row (each task's metric has its own scale): share of that task's best value
        row_max = np.nanmax(np.where(np.isnan(grid), -np.inf, grid), axis=1, keepdims=True)
        ax.imshow(grid / np.where(row_max > 0, row_max, 1.0), cmap="viridis", aspect="auto", vmin=0, vmax=1)
        for i in range(len(tasks)):
            for j in range(len(stages)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(stages)), [f"after T{s}" for s in stages], fontsize=8)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
        ax.set_title(strategy)
    fig.tight_layout()
    return figure_png(fig, dpi=120)


def write_report(report: dict, out_dir: str) -> dict[str, str]:
    fs, path = filesystem(out_dir)
    fs.makedirs(path, exist_ok=True)
    paths = {ext: posixpath.join(path, f"conure_report.{ext}") for ext in ("md", "json", "png")}
    write_text_atomic(paths["md"], report_markdown(report), fs)
    write_text_atomic(paths["json"], json.dumps(report, indent=1, default=str), fs)
    with atomic_open(paths["png"], fs, "wb") as fh:
        fh.write(heatmap_png(report))
    return paths
