"""The StackRec report: deep model from scratch vs stacked (adjacent, cross) on one dataset.

Figures: training time to the best validation MRR@5 (the counted stages, see scenario.py;
evaluation and checkpoint time reported apart), final test metrics, speed-up = scratch time /
stacked time (> 1: stacking pays), and a PNG of validation MRR@5 against training time. Written
as report.md, report.json and mrr5_vs_wallclock.png.
"""

from __future__ import annotations

import json
import posixpath

from distrec.storage import atomic_open, filesystem, write_text_atomic
from distrec.train.plots import figure_png

METRICS = ("mrr@5", "hr@5", "ndcg@5", "mrr@10", "hr@10", "ndcg@10")
PLOT = "mrr5_vs_wallclock.png"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}"  # reports from before the fair clock lack them


def build_report(cfg, results: dict[str, dict], machine: str) -> dict:
    scratch = results.get("scratch")
    rows = []
    for name, r in results.items():
        speedup = None
        if scratch is not None and name != "scratch" and r["time_to_best_s"] > 0:
            speedup = scratch["time_to_best_s"] / r["time_to_best_s"]
        rows.append({
            "variant": name, "blocks": r["blocks"], "stages": [s["blocks"] for s in r["stages"]],
            "steps": r["steps"], "time_to_best_s": r["time_to_best_s"],
            "time_to_best_all_stages_s": r["time_to_best_all_stages_s"],
            "eval_s": r.get("eval_s"), "checkpoint_s": r.get("checkpoint_s"),
            "best_valid_mrr@5": r["best_valid_mrr@5"], "speedup_vs_scratch": speedup,
            "test": {m: r["test"].get(m) for m in (*METRICS, "mrr@5_se", "num_rows")},
        })
    return {
        "run": cfg.run.name, "scenario": str(cfg.method.scenario), "arch": str(cfg.model.arch),
        "data": cfg.data.train, "machine": machine, "workers": cfg.trainer.num_workers,
        "sample_fraction": cfg.model.sample_fraction, "fresh_parts": [str(p) for p in cfg.method.fresh_parts],
        "variants": rows, "verdict": verdict(rows, cfg.method.scenario),
        "curves": {name: r["curve"] for name, r in results.items()},
    }


# A stacked model counts as comparable when its test MRR@5 is at most this share below scratch's
# (the paper's claim is comparable accuracy, not equal; ours), or when the gap is within two
# standard errors of the difference (too few test rows to tell the two apart).
MRR_TOLERANCE = 0.05


def _gap_se(a: dict, b: dict) -> float | None:
    if a.get("mrr@5_se") is None or b.get("mrr@5_se") is None:
        return None  # reports written before the standard error was recorded
    return (a["mrr@5_se"] ** 2 + b["mrr@5_se"] ** 2) ** 0.5


def verdict(rows: list[dict], scenario: str) -> str:
    """One plain sentence per stacked variant: does stacking pay here (faster AND comparable)?"""
    scratch = next((r for r in rows if r["variant"] == "scratch"), None)
    if scratch is None:
        return "no from-scratch baseline: nothing to compare"
    base = scratch["test"]["mrr@5"] or 0.0
    out = []
    for r in rows:
        if r["variant"] == "scratch" or r["speedup_vs_scratch"] is None:
            continue
        mrr = r["test"]["mrr@5"] or 0.0
        relative = (mrr - base) / base if base else 0.0
        se = _gap_se(r["test"], scratch["test"])
        within_noise = se is not None and abs(mrr - base) <= 2 * se
        faster = r["speedup_vs_scratch"] > 1
        comparable = mrr >= base * (1 - MRR_TOLERANCE) or within_noise
        if faster and comparable:
            outcome = "stacking pays here"
        elif faster:
            outcome = (f"faster, but beyond the {MRR_TOLERANCE:.0%} allowed below scratch: "
                       "stacking does NOT pay at comparable accuracy here")
        else:
            outcome = "stacking does NOT pay here"
        noise = "" if se is None else f", {'within' if within_noise else 'beyond'} 2 standard errors ({2 * se:.4f})"
        out.append(f"{r['variant']}: {r['speedup_vs_scratch']:.2f}x the scratch model's speed to its best "
                   f"validation MRR@5 ({scenario} counting), test MRR@5 {mrr - base:+.4f} ({relative:+.1%}{noise}) "
                   f"vs scratch: {outcome}")
    return "; ".join(out)


def to_markdown(report: dict) -> str:
    lines = [
        f"# StackRec report: {report['run']}",
        "",
        f"Scenario **{report['scenario']}**, {report['arch']}, data `{report['data']}`, "
        f"{report['workers']} workers on {report['machine']}; sampled softmax "
        f"{report['sample_fraction']:.0%} of items; fresh after stacking: {report['fresh_parts'] or 'nothing'}.",
        "",
        "| variant | stages (blocks) | steps | training time to best valid MRR@5 (s) | all stages (s) | "
        "evaluation (s) | checkpoints (s) | speed-up vs scratch | best valid MRR@5 | test MRR@5 | test HR@5 | "
        "test NDCG@5 | test MRR@10 | test HR@10 | test NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["variants"]:
        t = r["test"]
        speed = f"{r['speedup_vs_scratch']:.2f}x" if r["speedup_vs_scratch"] is not None else "-"
        lines.append(
            f"| {r['variant']} | {'→'.join(map(str, r['stages']))} | {'+'.join(map(str, r['steps']))} | "
            f"{r['time_to_best_s']:.1f} | {r['time_to_best_all_stages_s']:.1f} | {_seconds(r['eval_s'])} | "
            f"{_seconds(r['checkpoint_s'])} | {speed} | "
            f"{_f(r['best_valid_mrr@5'])} | {_f(t['mrr@5'])}{_se(t)} | "
            + " | ".join(_f(t[m]) for m in METRICS[1:]) + " |"
        )
    rows = report["variants"][0]["test"].get("num_rows")
    if rows:
        lines += ["", f"Test rows: {rows:,} (± is MRR@5's standard error over them)."]
    lines += ["", "Times count training steps only (the same for every variant); evaluation and "
              "checkpoint time of the counted stages are in their own columns.",
              "", f"**Verdict:** {report['verdict']}", "", f"![MRR@5 vs training time]({PLOT})", ""]
    return "\n".join(lines)


def _f(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _se(test: dict) -> str:
    return "" if test.get("mrr@5_se") is None else f" ± {test['mrr@5_se']:.4f}"


def plot_curves(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, curve in report["curves"].items():
        if curve:
            ax.plot([p["train_s"] for p in curve], [p["mrr@5"] for p in curve], marker="o", ms=3, label=name)
    ax.set_xlabel("training time (s, counted stages; evaluation and checkpoints excluded)")
    ax.set_ylabel("validation MRR@5")
    ax.set_title(f"{report['run']} ({report['scenario']})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fs, p = filesystem(path)
    with atomic_open(p, fs, "wb") as fh:
        fh.write(figure_png(fig))


def write_report(cfg, results: dict[str, dict], out_dir: str, machine: str) -> dict:
    report = build_report(cfg, results, machine)
    fs, p = filesystem(out_dir)
    fs.makedirs(p, exist_ok=True)
    write_text_atomic(posixpath.join(out_dir, "report.json"), json.dumps(report, indent=2), fs)
    write_text_atomic(posixpath.join(out_dir, "report.md"), to_markdown(report), fs)
    plot_curves(report, posixpath.join(out_dir, PLOT))
    return report
