"""``distrec msd report``: base CTR vs MSD (one student per teacher) and each ablation, over several
seeds, on the config's data: AUC / GAUC / LogLoss, overall and on rare items, as mean ± std and as
differences from the base model paired by seed; markdown + JSON + PNG.

The runs are the config's ``sweep:`` section, run by ``distrec.experiments.sweep`` as any sweep is
(on Ray Tune, locally or on a cluster; a rerun resumes and trains nothing twice): a grid over
``method.report.variant`` (the names variants.py defines: ``base``, ``msd-<teacher>``,
``msd-<teacher>-<ablation>``) x ``sweep.seeds``. Knowledge is produced earlier (``distrec msd
knowledge``; an LLM teacher over all of ml-100k takes long on a CPU): ``method.report.knowledge``
maps each teacher name to its directory. Before the sweep starts, the driver distils each student
the swept variants need, once per teacher (skipped when it exists), so concurrent trials never
distil the same student. The tables are built from the sweep's results.json and written beside it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath

from omegaconf import OmegaConf

from distrec.config.load import nest_dotted
from distrec.errors import ConfigError
from distrec.experiments.results import FINISHED, mean_std, paired_difference
from distrec.methods.msd.variants import (
    BASE,
    student_dir,
    teacher_overrides,
    variant_teacher,
    variants,
)
from distrec.storage import atomic_open, filesystem, write_text_atomic
from distrec.train.plots import figure_png

log = logging.getLogger("distrec")
VARIANT_KEY = "method.report.variant"
METRICS = ("auc", "gauc", "logloss", "rare_items_auc", "rare_items_logloss")
HEADERS = ("AUC", "GAUC", "LogLoss", "AUC, rare items", "LogLoss, rare items")
PLOT = "report.png"
REPORT_FILES = ("report.json", "report.md", PLOT)


def swept_variants(cfg) -> list[str]:
    """The variant names the config's sweep runs, checked against ``variants(cfg)``."""
    sweep = cfg.sweep
    grid = OmegaConf.to_container(sweep.grid, resolve=True)
    if set(grid) != {VARIANT_KEY} or sweep.random:
        raise ConfigError(f"the MSD report sweeps {VARIANT_KEY} alone (sweep.grid.{VARIANT_KEY}: [base, "
                          f"msd-<teacher>, ...], no sweep.random); this sweep's keys: {sorted(grid)}")
    known = variants(cfg)
    unknown = [n for n in grid[VARIANT_KEY] if n not in known]
    if unknown:
        raise ConfigError(f"sweep.grid.{VARIANT_KEY}: {unknown} are not variants of this config; known: {list(known)}")
    return list(grid[VARIANT_KEY])


def distil_students(cfg, names: list[str], run: bool = True) -> dict[str, dict]:
    """Distil, on this driver and before any trial starts, the student of every teacher the
    variants ``names`` use that has none yet; each teacher's distillation metrics."""
    from distrec.methods.msd.data import distill, ensure_imported

    metrics = {}
    for teacher in dict.fromkeys(t for t in (variant_teacher(cfg, n) for n in names) if t is not None):
        out = student_dir(cfg, teacher)
        if run and not os.path.isfile(os.path.join(out, "config.json")):
            log.info("report: distilling the %s teacher's knowledge into %s", teacher, out)
            ensure_imported(cfg)
            distill(OmegaConf.merge(cfg, *(nest_dotted(k, v) for k, v in teacher_overrides(cfg, teacher).items()),
                                    {"run": {"name": f"{cfg.sweep.name}-{teacher}"}}))
        path = os.path.join(out, "distill_metrics.json")
        if os.path.isfile(path):
            with open(path) as fh:
                metrics[teacher] = json.load(fh)
    return metrics


def run_report(cfg, address: str | None = None, run: bool = True) -> dict:
    """Distil the missing students, run the sweep's unfinished trials (``run=False``: neither),
    then write report.json / report.md / report.png beside the sweep's results. Returns the report
    (``report["paths"]``: every file written; ``report["errored"]``: trials that failed)."""
    from distrec.methods import run_sweep

    distillation = distil_students(cfg, swept_variants(cfg), run)
    outcome = run_sweep(cfg, address=address, run=run)
    fs, path = filesystem(outcome.paths["results.json"])
    report = build_report(cfg, json.loads(fs.cat_file(path)), distillation)
    paths = {name: posixpath.join(outcome.dir, name) for name in REPORT_FILES}
    write_text_atomic(paths["report.json"], json.dumps(report, indent=2, default=str), fs)
    write_text_atomic(paths["report.md"], markdown(report, cfg), fs)
    with atomic_open(paths[PLOT], fs) as fh:
        fh.write(metrics_png(report["variants"]))
    report["paths"] = {**outcome.paths, **paths}
    report["errored"] = outcome.errored
    return report


def build_report(cfg, results: dict, distillation: dict[str, dict]) -> dict:
    """Per variant (sweep order): mean ± std of every metric over its finished seeds, and each
    metric minus the base model's, paired by seed (mean, standard error, 95% t-interval)."""
    by_variant: dict[str, dict[int, dict]] = {name: {} for name in swept_variants(cfg)}
    for trial in results["trials"]:
        if trial["status"] == FINISHED:
            by_variant[trial["overrides"][VARIANT_KEY]][trial["seed"]] = trial["metrics"]
    rows = {}
    for name, per_seed in by_variant.items():
        row: dict = {"seeds": sorted(per_seed)}
        for metric in METRICS:
            values = {s: m[metric] for s, m in per_seed.items() if _finite(m.get(metric))}
            if values:
                row[metric], row[f"{metric}_std"] = mean_std(list(values.values()))
            base = {s: m[metric] for s, m in by_variant.get(BASE, {}).items() if _finite(m.get(metric))}
            if name != BASE and values and base:
                row[f"{metric}_vs_base"] = paired_difference(values, base).__dict__
        rows[name] = row
    return {"variants": rows, "distillation": distillation, "knowledge": dict(cfg.method.report.knowledge),
            "seeds": list(cfg.sweep.seeds) or [cfg.run.seed], "unfinished": results["unfinished"]}


def markdown(report: dict, cfg) -> str:
    table = report["variants"]
    lines = [f"# MSD on {cfg.data.train}", "",
             f"{cfg.trainer.epochs} epoch(s)"
             f"{f' capped at {cfg.trainer.max_steps} steps' if cfg.trainer.max_steps >= 0 else ''}, "
             f"batch {cfg.data.batch_size} per worker, {cfg.trainer.num_workers} workers, seeds "
             f"{report['seeds']}, tower {cfg.model.arch}; mean ± std over seeds. Rare items: "
             f"validation rows whose item was seen fewer than {cfg.method.semantics.cache_min_freq} times in "
             f"training (the items the student encodes online).", "",
             "| variant | seeds | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 2) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | {len(row['seeds'])} | " + " | ".join(_mean_std(row, m) for m in METRICS) + " |")
    if BASE in table and len(table) > 1:
        lines += ["", "Minus the base model's, paired by seed: mean ± standard error [95% t-interval].", "",
                  "| variant | pairs | " + " | ".join(f"Δ {h}" for h in HEADERS) + " |",
                  "|---" * (len(HEADERS) + 2) + "|"]
        for name, row in table.items():
            if name != BASE:
                pairs = max((row.get(f"{m}_vs_base") or {}).get("n", 0) for m in METRICS)
                lines.append(f"| {name} | {pairs} | " + " | ".join(_diff(row.get(f"{m}_vs_base")) for m in METRICS)
                             + " |")
    lines += ["", "| teacher | distillation loss before | after | steps |", "|---|---|---|---|"]
    for teacher, m in report["distillation"].items():
        lines.append(f"| {teacher} | {m.get('distill_loss_before', float('nan')):.4f} | "
                     f"{m.get('distill_loss_after', float('nan')):.4f} | {m.get('steps', '?')} |")
    if report["unfinished"]:
        lines += ["", f"Without results yet: {', '.join(report['unfinished'])}"]
    lines += ["", f"![metrics per variant]({PLOT})"]
    return "\n".join(lines) + "\n"


def _mean_std(row: dict, metric: str) -> str:
    if metric not in row:
        return "n/a"
    std = row[f"{metric}_std"]
    return f"{row[metric]:.4f}" if math.isnan(std) else f"{row[metric]:.4f} ± {std:.4f}"


def _diff(d: dict | None) -> str:
    if not d or not d["n"]:
        return "n/a"
    if d["n"] < 2:
        return f"{d['mean']:+.4f}"
    return f"{d['mean']:+.4f} ± {d['se']:.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metrics_png(table: dict[str, dict]) -> bytes:
    """One panel per metric: the variants' means over seeds with their std as error bars."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 0.45 * len(names) + 1.6))
    for ax, metric in zip(axes, METRICS):
        rows = [(i, table[n][metric], _zero_nan(table[n][f"{metric}_std"])) for i, n in enumerate(names)
                if metric in table[n]]
        if rows:
            ys, means, stds = zip(*rows)
            ax.barh(ys, means, xerr=stds, color=["#888" if names[y] == BASE else "#3a7" for y in ys])
            low = min(m - s for _, m, s in rows)
            high = max(m + s for _, m, s in rows)
            pad = max(high - low, 1e-3) * 0.3
            ax.set_xlim(low - pad, high + pad)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names))
        ax.invert_yaxis()
        ax.set_title(f"{HEADERS[METRICS.index(metric)]} ({'lower' if 'logloss' in metric else 'higher'} is better)")
    fig.tight_layout()
    return figure_png(fig, dpi=110)


def _zero_nan(value: float) -> float:
    return 0.0 if math.isnan(value) else value
