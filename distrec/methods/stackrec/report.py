"""The StackRec report: deep model from scratch vs stacked (adjacent, cross) on one dataset, as a
sweep over ``method.variant`` x seeds (the config's ``sweep:`` section; each trial one variant,
``scenario.run_trial``), so it runs on a Ray cluster as on a laptop and resumes like any sweep.

Figures, from the trials' variant.json files, mean ± std over seeds: training time to the best
validation MRR@5 (the counted stages, see scenario.py; evaluation and checkpoint time reported
apart), final test metrics, speed-up = scratch time / stacked time paired by seed (> 1: stacking
pays), the paired difference of test MRR@5 vs scratch across seeds, a verdict, and a PNG of
validation MRR@5 against training time (one line per seed). Written as report.md, report.json and
mrr5_vs_wallclock.png next to the sweep's results files.
"""

from __future__ import annotations

import json
import math
import posixpath

from distrec.errors import ConfigError
from distrec.experiments.results import mean_std, paired_difference
from distrec.storage import atomic_open, filesystem, write_text_atomic
from distrec.train.plots import figure_png

METRICS = ("mrr@5", "hr@5", "ndcg@5", "mrr@10", "hr@10", "ndcg@10")
PLOT = "mrr5_vs_wallclock.png"
VARIANT_KEY = "method.variant"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}"  # reports from before the fair clock lack them


def variant_results(trials: list[dict]) -> dict[str, dict[int, dict]]:
    """variant -> seed -> its variant.json, for every trial ``{point, seed, run_dir, done}`` of the
    sweep that has a result (``done``)."""
    from distrec.methods.stackrec.scenario import read_json

    keys = {k for t in trials for k in t["point"]}
    if keys != {VARIANT_KEY}:
        raise ConfigError(f"the StackRec report sweeps {VARIANT_KEY} alone (sweep.grid.{VARIANT_KEY}: [scratch, "
                          f"adjacent, cross], no sweep.random); this sweep's keys: {sorted(keys)}")
    results: dict[str, dict[int, dict]] = {}
    for trial in trials:
        if trial["done"]:
            variant = str(trial["point"][VARIANT_KEY])
            results.setdefault(variant, {})[trial["seed"]] = read_json(
                posixpath.join(trial["run_dir"], variant, "variant.json"))
    return results


def _stats(values: list) -> list | None:
    values = [v for v in values if v is not None]
    return list(mean_std(values)) if values else None


def build_report(cfg, results: dict[str, dict[int, dict]], machine: str) -> dict:
    """``results``: variant -> seed -> variant.json."""
    scratch = results.get("scratch", {})
    scratch_time = {s: r["time_to_best_s"] for s, r in scratch.items()}
    scratch_mrr = {s: r["test"].get("mrr@5") for s, r in scratch.items()}
    rows = []
    for name, by_seed in results.items():
        runs = [by_seed[s] for s in sorted(by_seed)]
        speedups = [scratch_time[s] / r["time_to_best_s"] for s, r in sorted(by_seed.items())
                    if name != "scratch" and s in scratch_time and r["time_to_best_s"] > 0]
        vs_scratch = None
        if name != "scratch" and scratch:
            d = paired_difference({s: r["test"]["mrr@5"] for s, r in by_seed.items()},
                                  {s: v for s, v in scratch_mrr.items() if v is not None})
            vs_scratch = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.__dict__.items()}
        speedup = _stats(speedups)
        rows.append({
            "variant": name, "seeds": sorted(by_seed), "blocks": runs[0]["blocks"],
            "stages": [s["blocks"] for s in runs[0]["stages"]],
            "steps": [round(sum(r["steps"][k] for r in runs) / len(runs)) for k in range(len(runs[0]["steps"]))],
            "time_to_best_s": _stats([r["time_to_best_s"] for r in runs]),
            "time_to_best_all_stages_s": _stats([r["time_to_best_all_stages_s"] for r in runs]),
            "eval_s": _stats([r.get("eval_s") for r in runs]),
            "checkpoint_s": _stats([r.get("checkpoint_s") for r in runs]),
            "best_valid_mrr@5": _stats([r["best_valid_mrr@5"] for r in runs]),
            "speedup_vs_scratch": speedup[0] if speedup else None,
            "speedup_vs_scratch_std": speedup[1] if speedup else None,
            "test": {m: (_stats([r["test"].get(m) for r in runs]) or [None, None])[0] for m in
                     (*METRICS, "mrr@5_se", "num_rows")},
            "test_std": {m: (_stats([r["test"].get(m) for r in runs]) or [None, None])[1] for m in METRICS},
            "vs_scratch": vs_scratch,
        })
    return {
        "run": cfg.sweep.name, "scenario": str(cfg.method.scenario), "arch": str(cfg.model.arch),
        "data": cfg.data.train, "machine": machine, "workers": cfg.trainer.num_workers,
        "sample_fraction": cfg.model.sample_fraction, "fresh_parts": [str(p) for p in cfg.method.fresh_parts],
        "variants": rows, "verdict": verdict(rows, cfg.method.scenario),
        "curves": {name: {str(s): r["curve"] for s, r in sorted(by_seed.items())} for name, by_seed in results.items()},
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
    """One plain sentence per stacked variant: does stacking pay here (faster AND comparable)?
    Noise: the paired difference's standard error across seeds when there are 2+ seeds, else the
    standard error of the two test MRR@5 values over the test rows."""
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
        paired = r.get("vs_scratch")
        if paired and paired["n"] > 1 and paired["se"] is not None:
            se, over = paired["se"], " over seeds"
        else:
            se, over = _gap_se(r["test"], scratch["test"]), ""
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
        noise = "" if se is None else \
            f", {'within' if within_noise else 'beyond'} 2 standard errors{over} ({2 * se:.4f})"
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
        "Each cell: mean ± std over seeds (n seeds).",
        "",
        "| variant | seeds | stages (blocks) | steps | training time to best valid MRR@5 (s) | all stages (s) | "
        "evaluation (s) | checkpoints (s) | speed-up vs scratch | best valid MRR@5 | test MRR@5 | test HR@5 | "
        "test NDCG@5 | test MRR@10 | test HR@10 | test NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["variants"]:
        t, sd = r["test"], r["test_std"]
        speed = "-" if r["speedup_vs_scratch"] is None else \
            f"{_ms(r['speedup_vs_scratch'], r['speedup_vs_scratch_std'], '.2f')}x"
        lines.append(
            f"| {r['variant']} | {len(r['seeds'])} | {'→'.join(map(str, r['stages']))} | "
            f"{'+'.join(map(str, r['steps']))} | {_ms(*r['time_to_best_s'], '.1f')} | "
            f"{_ms(*r['time_to_best_all_stages_s'], '.1f')} | {_seconds(_mean(r['eval_s']))} | "
            f"{_seconds(_mean(r['checkpoint_s']))} | {speed} | {_ms(*(r['best_valid_mrr@5'] or [None, None]))} | "
            + " | ".join(_ms(t[m], sd[m]) for m in METRICS) + " |"
        )
    lines += ["", "## Test MRR@5 minus scratch's, paired by seed", "",
              "| variant | pairs | Δ test MRR@5 (mean ± SE over seeds) | 95% CI | test-row SE of MRR@5 |",
              "|---|---|---|---|---|"]
    for r in report["variants"]:
        d = r["vs_scratch"]
        if d is None:
            continue
        delta = "n/a" if not d["n"] else f"{d['mean']:+.4f}" + ("" if d["se"] is None else f" ± {d['se']:.4f}")
        ci = "n/a" if d["ci_low"] is None else f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"
        lines.append(f"| {r['variant']} | {d['n']} | {delta} | {ci} | {_f(r['test']['mrr@5_se'])} |")
    rows = report["variants"][0]["test"].get("num_rows") if report["variants"] else None
    if rows:
        lines += ["", f"Test rows: {rows:,.0f} (the test-row SE is MRR@5's standard error over them, mean over seeds)."]
    lines += ["", "Times count training steps only (the same for every variant); evaluation and "
              "checkpoint time of the counted stages are in their own columns (means). The speed-up is "
              "scratch's time over the variant's, paired by seed.",
              "", f"**Verdict:** {report['verdict']}", "", f"![MRR@5 vs training time]({PLOT})", ""]
    return "\n".join(lines)


def _mean(stats: list | None):
    return None if stats is None else stats[0]


def _ms(mean, std, fmt: str = ".4f") -> str:
    if mean is None:
        return "-"
    if std is None or math.isnan(std):
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format(std, fmt)}"


def _f(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def plot_curves(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (name, by_seed) in enumerate(report["curves"].items()):
        for j, curve in enumerate(c for c in by_seed.values() if c):
            ax.plot([p["train_s"] for p in curve], [p["mrr@5"] for p in curve], marker="o", ms=3, alpha=0.8,
                    color=f"C{i}", label=name if j == 0 else None)
    ax.set_xlabel("training time (s, counted stages; evaluation and checkpoints excluded)")
    ax.set_ylabel("validation MRR@5 (one line per seed)")
    ax.set_title(f"{report['run']} ({report['scenario']})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fs, p = filesystem(path)
    with atomic_open(p, fs, "wb") as fh:
        fh.write(figure_png(fig))


def write_report(cfg, results: dict[str, dict[int, dict]], out_dir: str, machine: str) -> dict:
    """report.json, report.md and the PNG under ``out_dir``; ``results``: variant -> seed -> variant.json."""
    report = build_report(cfg, results, machine)
    fs, p = filesystem(out_dir)
    fs.makedirs(p, exist_ok=True)
    write_text_atomic(posixpath.join(out_dir, "report.json"), json.dumps(report, indent=2), fs)
    write_text_atomic(posixpath.join(out_dir, "report.md"), to_markdown(report), fs)
    plot_curves(report, posixpath.join(out_dir, PLOT))
    return report


def run_report(cfg, address: str | None = None, run: bool = True, out: str | None = None,
               machine: str | None = None) -> tuple[dict, str, list[str]]:
    """``distrec stackrec report``: the config's sweep (its unfinished trials; ``run=False``: none),
    then the report from the trials' variant.json files; the report, its directory (``out``, else
    ``method.report_dir``, else the sweep's directory) and the trials that failed."""
    import platform

    from distrec.experiments.results import collect_records
    from distrec.experiments.sweep import plan_sweep
    from distrec.methods import run_sweep

    plan = plan_sweep(cfg)
    run_dirs = plan.run_dirs()
    trials = [{"point": t.point, "seed": t.seed, "run_dir": run_dirs[t.id], "done": False} for t in plan.trials]
    variant_results(trials)  # the sweep's keys are checked before anything runs
    outcome = run_sweep(cfg, address=address, run=run)
    records = collect_records(plan.trials, plan.fingerprints(), run_dirs)
    for trial, t in zip(plan.trials, trials):
        t["done"] = trial.id in records
    out = out or cfg.method.report_dir or outcome.dir
    machine = machine or f"{platform.machine()} {platform.processor() or ''}".strip()
    return write_report(cfg, variant_results(trials), out, machine), out, outcome.errored
