"""A sweep's results from its trials' records: ``results.json``, ``results.md`` and ``results.png``.

Per point: mean ± sample std over seeds of every numeric metric. Against the baseline point,
paired by seed: the mean difference of ``sweep.metric``, its standard error and a 95% t-interval.
Trials that ASHA stopped early are listed but left out of the statistics (their metrics come
from an earlier step than the others').
"""

from __future__ import annotations

import json
import math
import posixpath
from dataclasses import dataclass, field

from distrec.experiments.trials import Trial, point_label, read_trial_record
from distrec.storage import atomic_open, filesystem, write_text_atomic
from distrec.train.plots import figure_png

FINISHED = "finished"
STOPPED_EARLY = "stopped_early"
RESULT_FILES = ("results.json", "results.md", "results.png")


@dataclass
class PairedDifference:
    n: int
    mean: float
    se: float  # nan with fewer than 2 pairs
    ci_low: float
    ci_high: float


@dataclass
class PointSummary:
    label: str
    point: dict
    n: int  # finished seeds
    stopped: int  # seeds stopped early by ASHA
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> (mean, std)
    values: dict[int, float] = field(default_factory=dict)  # seed -> sweep.metric
    vs_baseline: PairedDifference | None = None


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; nan for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, std


def paired_difference(values: dict[int, float], baseline: dict[int, float]) -> PairedDifference:
    """``values - baseline`` over the seeds both have: mean, standard error, 95% t-interval."""
    from scipy.stats import t

    diffs = [values[s] - baseline[s] for s in sorted(values) if s in baseline]
    n = len(diffs)
    if n == 0:
        return PairedDifference(0, math.nan, math.nan, math.nan, math.nan)
    mean, std = mean_std(diffs)
    se = std / math.sqrt(n)
    half = float(t.ppf(0.975, n - 1)) * se if n > 1 else math.nan
    return PairedDifference(n, mean, se, mean - half, mean + half)


def collect_records(trials: list[Trial], fingerprints: dict[str, dict], run_dirs: dict[str, str]) -> dict[str, dict]:
    """trial id -> its record, for every trial that has one written for its current config."""
    found = {}
    for trial in trials:
        record = read_trial_record(run_dirs[trial.id], fingerprints[trial.id])
        if record is not None:
            found[trial.id] = record
    return found


def summarize(trials: list[Trial], records: dict[str, dict], metric: str, baseline_index: int) -> list[PointSummary]:
    """One summary per point, in sweep order; paired differences against ``baseline_index``."""
    by_point: dict[str, list[Trial]] = {}
    for trial in trials:
        by_point.setdefault(json.dumps(trial.point, sort_keys=True, default=str), []).append(trial)
    summaries = []
    for group in by_point.values():
        label = point_label(group[0].point)
        finished = [(t, records[t.id]) for t in group if t.id in records and records[t.id]["status"] == FINISHED]
        stopped = sum(1 for t in group if t.id in records and records[t.id]["status"] == STOPPED_EARLY)
        summary = PointSummary(label, group[0].point, len(finished), stopped)
        for name in numeric_metric_names([r["metrics"] for _, r in finished], metric):
            values = [r["metrics"][name] for _, r in finished if _is_number(r["metrics"].get(name))]
            if values:
                summary.stats[name] = mean_std(values)
        summary.values = {t.seed: r["metrics"][metric] for t, r in finished if _is_number(r["metrics"].get(metric))}
        summaries.append(summary)
    if summaries:
        base = summaries[baseline_index].values
        for i, summary in enumerate(summaries):
            if i != baseline_index:
                summary.vs_baseline = paired_difference(summary.values, base)
    return summaries


def numeric_metric_names(metrics: list[dict], first: str) -> list[str]:
    names = [first] if any(_is_number(m.get(first)) for m in metrics) else []
    for m in metrics:
        names += [k for k, v in m.items() if _is_number(v) and k not in names]
    return names


def write_results(out_dir: str, name: str, trials: list[Trial], records: dict[str, dict], metric: str,
                  mode: str, baseline_index: int) -> tuple[dict[str, str], str]:
    """Write the three result files (each atomically) under ``out_dir``; their paths by name, and
    the markdown."""
    summaries = summarize(trials, records, metric, baseline_index)
    fs, path = filesystem(out_dir)
    fs.makedirs(path, exist_ok=True)
    paths = {f: posixpath.join(out_dir, f) for f in RESULT_FILES}
    markdown = results_markdown(name, trials, records, summaries, metric, mode, baseline_index)
    write_text_atomic(paths["results.json"], json.dumps(
        results_json(name, trials, records, summaries, metric, mode, baseline_index), indent=2, default=str), fs)
    write_text_atomic(paths["results.md"], markdown, fs)
    with atomic_open(paths["results.png"], fs) as fh:
        fh.write(results_plot(summaries, metric, baseline_index))
    return paths, markdown


def results_json(name, trials, records, summaries, metric, mode, baseline_index) -> dict:
    return {
        "sweep": name, "metric": metric, "mode": mode,
        "baseline": summaries[baseline_index].label if summaries else None,
        "trials": [{"id": t.id, "overrides": t.point, "seed": t.seed, "status": records[t.id]["status"],
                    "metrics": records[t.id]["metrics"]} for t in trials if t.id in records],
        "unfinished": [t.id for t in trials if t.id not in records],
        "points": [{"overrides": s.point, "n": s.n, "stopped_early": s.stopped,
                    "mean_std": {k: list(v) for k, v in s.stats.items()},
                    "vs_baseline": s.vs_baseline.__dict__ if s.vs_baseline else None} for s in summaries],
    }


def results_markdown(name, trials, records, summaries, metric, mode, baseline_index) -> str:
    done = sum(1 for t in trials if t.id in records)
    lines = [f"# Sweep {name}: {metric} ({mode})", "",
             f"{done} of {len(trials)} trials have results. Per point: mean ± std over seeds (n seeds)."]
    if not summaries or not any(s.n for s in summaries):
        return "\n".join([*lines, "", "No finished trials yet.", ""])
    names = numeric_metric_names([records[t.id]["metrics"] for t in trials if t.id in records], metric)
    stopped = any(s.stopped for s in summaries)
    header = ["point", "n", *(["stopped early"] if stopped else []), *names]
    lines += ["", _row(header), _row(["---"] * len(header))]
    for i, s in enumerate(summaries):
        label = f"{s.label} (baseline)" if i == baseline_index else s.label
        cells = [_fmt_mean_std(*s.stats[n]) if n in s.stats else "" for n in names]
        lines.append(_row([label, str(s.n), *([str(s.stopped)] if stopped else []), *cells]))
    lines += ["", f"## {metric} minus the baseline's, paired by seed", "",
              f"Baseline: {summaries[baseline_index].label}. Mean difference ± standard error, 95% t-interval.", "",
              _row(["point", "pairs", f"Δ {metric}", "95% CI"]), _row(["---"] * 4)]
    for i, s in enumerate(summaries):
        if i == baseline_index or s.vs_baseline is None:
            continue
        d = s.vs_baseline
        ci = f"[{d.ci_low:+.4g}, {d.ci_high:+.4g}]" if d.n > 1 else ("n/a (one pair)" if d.n else "n/a")
        delta = f"{d.mean:+.4g} ± {d.se:.2g}" if d.n > 1 else (f"{d.mean:+.4g}" if d.n else "n/a")
        lines.append(_row([s.label, str(d.n), delta, ci]))
    unfinished = [t.id for t in trials if t.id not in records]
    if unfinished:
        lines += ["", f"Without results: {', '.join(unfinished)}"]
    return "\n".join([*lines, ""])


def results_plot(summaries: list[PointSummary], metric: str, baseline_index: int) -> bytes:
    """PNG bytes: ``metric`` per point, mean ± std over seeds, with each seed's value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(summaries) + 2), 4))
    for x, s in enumerate(summaries):
        if metric in s.stats:
            mean, std = s.stats[metric]
            color = "tab:red" if x == baseline_index else "tab:blue"
            ax.errorbar([x], [mean], yerr=[0 if math.isnan(std) else std], fmt="o", color=color, capsize=4)
            ax.scatter([x] * len(s.values), list(s.values.values()), color="gray", s=10, zorder=3)
    ax.set_xticks(range(len(summaries)))
    ax.set_xticklabels([s.label.replace(", ", "\n") for s in summaries], fontsize=7)
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.set_title(f"{metric} per point (red: baseline)")
    fig.tight_layout()
    return figure_png(fig, dpi=110)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _fmt_mean_std(mean: float, std: float) -> str:
    return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
