"""``distrec egean report CONFIG``: EGEAN and the baselines on the same ground-truth data, as a sweep.

The runs are the config's ``sweep:`` section, run by ``distrec.experiments.sweep`` exactly as
``distrec sweep CONFIG`` runs it (Ray Tune trials on a laptop's embedded Ray or on a cluster;
rerunning resumes and never trains a finished trial again): a grid over ``model.variant`` x
``method.ground_truth.shift``, each point once per seed of ``sweep.seeds``. Every trial is one
``distrec run`` on its own generated data: the config's data paths interpolate
``${method.ground_truth.shift}`` and ``${run.seed}`` (and ``method.ground_truth.seed`` is
``${run.seed}``, so the seed drives both the data sample and the model), and the trial's prepare
step writes that data on first use (configs/egean/ground-truth.yaml).

From the sweep's results.json records it then writes, beside the sweep's own results files in
``<run.output_dir>/<sweep.name>/``: ``report.json`` (every trial's metrics, mean ± std per variant
and shift, paired differences), ``report.md`` (the tables) and ``bias_vs_shift.png`` (exposure-space
CVR bias and AUC against shift strength, mean ± std over seeds). The statistics are the sweep's
(``distrec.experiments.results``: sample std, paired differences with 95% t-intervals); against
ESCM²-DR and ESMM the differences are paired by seed at each shift.
"""

from __future__ import annotations

import json
import math
import posixpath

from omegaconf import OmegaConf

from distrec.errors import ConfigError
from distrec.experiments.results import FINISHED, mean_std, paired_difference
from distrec.storage import atomic_open, filesystem, write_text_atomic
from distrec.train.plots import figure_png

VARIANT_KEY = "model.variant"
SHIFT_KEY = "method.ground_truth.shift"
REFERENCES = ("escm2_dr", "esmm")  # the baselines every other variant is paired against
REPORT_FILES = ("report.json", "report.md", "bias_vs_shift.png")
RELATIVE_BIAS = "cvr_relative_bias_exposure"  # cvr_bias_exposure / cvr_mean_true_exposure, per trial
ABS_BIAS = "cvr_abs_bias_exposure"

# (metric key, heading, lower is better?)
REPORT_METRICS = (
    ("cvr_bias_exposure", "CVR bias over the exposure space (mean p̂CVR − mean true CVR)", True),
    (RELATIVE_BIAS, "Relative CVR bias over the exposure space (bias / mean true CVR)", True),
    ("cvr_exposure_auc", "CVR AUC over the exposure space (against the conversion draws)", False),
    ("cvr_auc", "CVR AUC on clicked impressions", False),
    ("ctr_auc", "CTR AUC", False),
    ("ctcvr_auc", "CTCVR AUC on impressions", False),
)
# paired against the references: |bias| (smaller is better) and exposure-space AUC
PAIRED_METRICS = ((ABS_BIAS, "|CVR bias| over the exposure space"), ("cvr_exposure_auc", "CVR AUC over the exposure space"))


def check_config(cfg) -> None:
    """The report needs generated data, and one data set per swept shift."""
    if cfg.method.ground_truth is None:
        raise ConfigError("distrec egean report needs method.ground_truth (the generated data's settings)")
    if len(set(_grid(cfg, SHIFT_KEY, []))) > 1:
        raw = OmegaConf.to_container(cfg.data, resolve=False)
        same = [k for k in ("train", "valid", "schema") if raw.get(k) and "${method.ground_truth.shift}" not in raw[k]]
        if same:
            raise ConfigError(f"sweep.grid.{SHIFT_KEY} has several values but data.{same[0]} ({raw[same[0]]}) "
                              "does not depend on it: every shift needs its own data, e.g. "
                              "data.train=runs/data/NAME/shift-${method.ground_truth.shift}-seed-${run.seed}/train")


def report_dir(cfg) -> str:
    """The sweep's folder (``sweep_dir`` in distrec.experiments.trials), where the report goes too."""
    from distrec.experiments.trials import sweep_dir

    return sweep_dir(cfg)


def run_report(cfg, address: str | None = None, run: bool = True) -> dict:
    """Run the sweep's unfinished trials (``run=False``: none), then write the report's files.
    Returns the report (``report["paths"]``: the files written, the sweep's own included)."""
    from distrec.methods import run_sweep

    check_config(cfg)
    outcome = run_sweep(cfg, address=address, run=run)
    fs, path = filesystem(outcome.paths["results.json"])
    results = json.loads(fs.cat_file(path))
    report = build_report(cfg, results)
    paths = {name: posixpath.join(outcome.dir, name) for name in REPORT_FILES}
    write_text_atomic(paths["report.json"], json.dumps(_json_safe(report), indent=2, sort_keys=True), fs)
    write_text_atomic(paths["report.md"], markdown(report), fs)
    with atomic_open(paths["bias_vs_shift.png"], fs) as fh:
        fh.write(plot(report))
    report["paths"] = {**outcome.paths, **paths}
    report["errored"] = outcome.errored
    return report


def trial_rows(cfg, results: dict) -> list[dict]:
    """One row per finished trial: variant, shift, seed, trial id and its final metrics, plus the
    relative and absolute exposure-space bias."""
    rows = []
    for trial in results["trials"]:
        if trial["status"] != FINISHED:
            continue
        point = trial["overrides"]
        metrics = dict(trial["metrics"])
        bias, truth = metrics.get("cvr_bias_exposure"), metrics.get("cvr_mean_true_exposure")
        if _finite(bias):
            metrics[ABS_BIAS] = abs(bias)
            if _finite(truth) and truth:
                metrics[RELATIVE_BIAS] = bias / truth
        rows.append({"trial": trial["id"], "seed": trial["seed"],
                     "variant": str(point.get(VARIANT_KEY, cfg.model.variant)),
                     "shift": float(point.get(SHIFT_KEY, cfg.method.ground_truth.shift)), **metrics})
    return rows


def build_report(cfg, results: dict) -> dict:
    """{meta, runs, summary: {variant: {shift: {metric: {mean, std, n}}}}, paired: [...]}."""
    rows = trial_rows(cfg, results)
    variants = [str(v) for v in _grid(cfg, VARIANT_KEY, [cfg.model.variant])]
    shifts = [float(s) for s in _grid(cfg, SHIFT_KEY, [cfg.method.ground_truth.shift])]
    metrics = [k for k, _, _ in REPORT_METRICS] + [ABS_BIAS]
    summary: dict = {}
    for variant in variants:
        for shift in shifts:
            cell = [r for r in rows if r["variant"] == variant and r["shift"] == shift]
            stats = {}
            for key in metrics:
                values = [r[key] for r in cell if _finite(r.get(key))]
                if values:
                    mean, std = mean_std(values)
                    stats[key] = {"mean": mean, "std": std, "n": len(values)}
            summary.setdefault(variant, {})[f"{shift:g}"] = stats
    paired = []
    for reference in (r for r in REFERENCES if r in variants):
        for variant in (v for v in variants if v != reference):
            for shift in shifts:
                for key, _ in PAIRED_METRICS:
                    diff = paired_difference(_by_seed(rows, variant, shift, key), _by_seed(rows, reference, shift, key))
                    if diff.n:
                        paired.append({"variant": variant, "reference": reference, "shift": shift, "metric": key,
                                       **diff.__dict__})
    gt = cfg.method.ground_truth
    meta = {"sweep": results["sweep"], "rows": gt.rows, "valid_rows": gt.valid_rows,
            "seeds": sorted({r["seed"] for r in rows}), "variants": variants, "shifts": shifts,
            "finished": len(results["trials"]), "trials": len(results["trials"]) + len(results["unfinished"]),
            "unfinished": results["unfinished"]}
    return {"meta": meta, "summary": summary, "paired": paired, "runs": rows}


def markdown(report: dict) -> str:
    meta, summary = report["meta"], report["summary"]
    variants, shifts = meta["variants"], meta["shifts"]
    lines = [
        "# EGEAN vs baselines on ground-truth data",
        "",
        f"Sweep `{meta['sweep']}`: {meta['rows']} training / {meta['valid_rows']} validation impressions per "
        f"data set; seeds {meta['seeds']} (data sample and model); mean ± std over seeds. Shift = strength "
        "of click selection on the conversion drivers (0: none).",
    ]
    if meta["unfinished"]:
        shown = ", ".join(meta["unfinished"][:8]) + (", ..." if len(meta["unfinished"]) > 8 else "")
        lines += ["", f"{meta['finished']} of {meta['trials']} trials have results; without results yet: {shown}"]
    for key, heading, lower_better in REPORT_METRICS:
        if not any(key in summary[v][f"{s:g}"] for v in variants for s in shifts):
            continue
        lines += ["", f"## {heading}", "", f"({'closer to 0' if lower_better else 'higher'} is better)", "",
                  "| model | " + " | ".join(f"shift {s:g}" for s in shifts) + " |",
                  "|---|" + "---|" * len(shifts)]
        for v in variants:
            cells = [_fmt_stat(summary[v][f"{s:g}"].get(key), signed=lower_better) for s in shifts]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    for reference in (r for r in REFERENCES if r in variants):
        for key, heading in PAIRED_METRICS:
            rows = [p for p in report["paired"] if p["reference"] == reference and p["metric"] == key]
            if not rows:
                continue
            lines += ["", f"## {heading}: model minus {reference}, paired by seed", "",
                      "Mean difference ± standard error [95% t-interval] per shift"
                      f" ({'negative' if key == ABS_BIAS else 'positive'}: better than {reference}).", "",
                      "| model | " + " | ".join(f"shift {s:g}" for s in shifts) + " |",
                      "|---|" + "---|" * len(shifts)]
            for v in (v for v in variants if v != reference):
                cells = []
                for s in shifts:
                    d = next((p for p in rows if p["variant"] == v and p["shift"] == s), None)
                    cells.append(_fmt_diff(d))
                lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, meta = report["summary"], report["meta"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for v in meta["variants"]:
        for ax, key in zip(axes, ("cvr_bias_exposure", "cvr_exposure_auc")):
            pts = [(s, summary[v][f"{s:g}"][key]) for s in meta["shifts"] if key in summary[v][f"{s:g}"]]
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts],
                            yerr=[0.0 if math.isnan(p[1]["std"]) else p[1]["std"] for p in pts],
                            marker="o", capsize=3, label=v)
    axes[0].axhline(0.0, color="grey", lw=0.8)
    axes[0].set(xlabel="covariate shift strength", ylabel="mean p̂CVR − mean true CVR",
                title="CVR calibration bias, exposure space (mean ± std over seeds)")
    axes[1].set(xlabel="covariate shift strength", ylabel="AUC", title="CVR AUC, exposure space")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend()
    fig.tight_layout()
    return figure_png(fig, dpi=120)


def _grid(cfg, key: str, default: list) -> list:
    grid = OmegaConf.to_container(cfg.sweep.grid, resolve=True)
    return list(grid[key]) if key in grid else default


def _by_seed(rows: list[dict], variant: str, shift: float, key: str) -> dict[int, float]:
    return {r["seed"]: r[key] for r in rows if r["variant"] == variant and r["shift"] == shift and _finite(r.get(key))}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt_stat(st: dict | None, signed: bool) -> str:
    if not st:
        return "n/a"
    mean = f"{st['mean']:+.4f}" if signed else f"{st['mean']:.4f}"
    return mean if math.isnan(st["std"]) else f"{mean} ± {st['std']:.4f}"


def _fmt_diff(d: dict | None) -> str:
    if not d:
        return "n/a"
    if d["n"] < 2:
        return f"{d['mean']:+.4f} (one seed)"
    return f"{d['mean']:+.4f} ± {d['se']:.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"


def _json_safe(value):
    """NaN (a one-seed std) as null: report.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
