"""``distrec egean report CONFIG``: EGEAN and the baselines on the same ground-truth data.

For every shift strength in ``method.report.shifts`` and seed in ``method.report.seeds`` it
generates ground-truth impressions (``method.ground_truth`` with that shift; the seed drives both
the data sample and the model), trains every model of ``method.report.models`` on them with
``trainer.num_workers`` local gloo processes, and writes to the report directory:
``report.json`` (every run's metrics and mean ± std per model and shift), ``report.md`` (the
tables) and ``bias_vs_shift.png`` (exposure-space CVR bias and AUC against shift strength).
"""

from __future__ import annotations

import json
import logging
import posixpath
import statistics
import time

from omegaconf import OmegaConf

from distrec.config.load import config_to_dict, run_dir
from distrec.errors import ConfigError
from distrec.storage import atomic_open, filesystem, write_text_atomic
from distrec.train.plots import figure_png

log = logging.getLogger("distrec")

# (metric key, heading, lower is better?)
REPORT_METRICS = (
    ("cvr_bias_exposure", "CVR bias over the exposure space (mean p̂CVR − mean true CVR)", True),
    ("cvr_exposure_auc", "CVR AUC over the exposure space (against the conversion draws)", False),
    ("cvr_auc", "CVR AUC on clicked impressions", False),
    ("ctr_auc", "CTR AUC", False),
    ("ctcvr_auc", "CTCVR AUC on impressions", False),
)


def report_dir(cfg) -> str:
    return cfg.method.report.out or posixpath.join(run_dir(cfg), "report")


def plan_jobs(cfg) -> list[dict]:
    rep = cfg.method.report
    if cfg.method.ground_truth is None:
        raise ConfigError("distrec egean report needs method.ground_truth (the generated data's settings)")
    if not rep.models or not rep.seeds or not rep.shifts:
        raise ConfigError(f"method.report: models {[str(m) for m in rep.models]}, seeds {list(rep.seeds)} "
                          f"and shifts {list(rep.shifts)} must be non-empty")
    return [{"model": str(m), "shift": float(s), "seed": int(seed)}
            for s in rep.shifts for seed in rep.seeds for m in rep.models]


def data_dir(out: str, shift: float, seed: int) -> str:
    return posixpath.join(out, "data", f"shift-{shift:g}-seed-{seed}")


def prepare_report_data(cfg, out: str, jobs: list[dict]) -> None:
    from distrec.methods.egean.ground_truth import write_ground_truth

    endpoint = cfg.data.s3_endpoint_url
    for shift, seed in sorted({(j["shift"], j["seed"]) for j in jobs}):
        target = data_dir(out, shift, seed)
        fs, path = filesystem(posixpath.join(target, "schema.yaml"), endpoint)
        if fs.exists(path):  # schema.yaml is written last: its presence marks complete data
            continue
        gt = OmegaConf.merge(cfg.method.ground_truth, {"shift": shift, "seed": seed})
        log.info("report: generating ground-truth data (shift %g, seed %d) in %s", shift, seed, target)
        write_ground_truth(target, gt, endpoint, progress=False)


def job_config(cfg_dict: dict, job: dict, out: str):
    cfg = OmegaConf.create(cfg_dict)
    data = data_dir(out, job["shift"], job["seed"])
    OmegaConf.update(cfg, "model.variant", job["model"])
    OmegaConf.update(cfg, "run.seed", job["seed"])
    OmegaConf.update(cfg, "run.name", f"{job['model']}-shift-{job['shift']:g}-seed-{job['seed']}")
    OmegaConf.update(cfg, "run.output_dir", posixpath.join(out, "runs"))
    OmegaConf.update(cfg, "run.resume", False)
    OmegaConf.update(cfg, "data.train", posixpath.join(data, "train"))
    OmegaConf.update(cfg, "data.valid", posixpath.join(data, "valid"))
    OmegaConf.update(cfg, "data.schema", posixpath.join(data, "schema.yaml"))
    OmegaConf.update(cfg, "method.ground_truth", None, merge=False)
    return cfg


def train_jobs(rank: int, cfg_dict: dict, jobs: list[dict], out: str) -> list[dict]:
    """Run in every spawned worker: train each job in turn (all ranks together)."""
    from distrec.methods.egean.recipe import train_worker

    results, start = [], time.monotonic()
    for i, job in enumerate(jobs):
        metrics = train_worker(job_config(cfg_dict, job, out))
        results.append({**job, **metrics})
        if rank == 0:
            elapsed = time.monotonic() - start
            eta = elapsed / (i + 1) * (len(jobs) - i - 1)
            log.info("report: %d/%d done (%s, shift %g, seed %d: exposure bias %+.4f) | ETA %.0f s",
                     i + 1, len(jobs), job["model"], job["shift"], job["seed"],
                     metrics.get("cvr_bias_exposure", float("nan")), eta)
    return results


def summarise(runs: list[dict], models: list[str], shifts: list[float]) -> dict:
    """{model: {shift: {metric: {mean, std, n}}}} over seeds."""
    summary: dict = {}
    for model in models:
        for shift in shifts:
            cell = [r for r in runs if r["model"] == model and r["shift"] == shift]
            stats = {}
            for key, _, _ in REPORT_METRICS:
                values = [r[key] for r in cell if key in r and r[key] == r[key]]  # drop nan
                if values:
                    stats[key] = {"mean": statistics.fmean(values),
                                  "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                                  "n": len(values)}
            summary.setdefault(model, {})[f"{shift:g}"] = stats
    return summary


def markdown(summary: dict, models: list[str], shifts: list[float], meta: dict) -> str:
    lines = [
        "# EGEAN vs baselines on ground-truth data",
        "",
        f"{meta['rows']} training / {meta['valid_rows']} validation impressions per data set; "
        f"seeds {meta['seeds']} (data sample and model); mean ± std over seeds. Shift = strength "
        "of click selection on the conversion drivers (0: none).",
    ]
    for key, heading, lower_better in REPORT_METRICS:
        if not any(key in summary[m][f"{s:g}"] for m in models for s in shifts):
            continue
        lines += ["", f"## {heading}", "", f"({'closer to 0' if lower_better else 'higher'} is better)", "",
                  "| model | " + " | ".join(f"shift {s:g}" for s in shifts) + " |",
                  "|---|" + "---|" * len(shifts)]
        for m in models:
            cells = []
            for s in shifts:
                st = summary[m][f"{s:g}"].get(key)
                cells.append(f"{st['mean']:+.4f} ± {st['std']:.4f}" if st and lower_better
                             else f"{st['mean']:.4f} ± {st['std']:.4f}" if st else "n/a")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, models: list[str], shifts: list[float]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for m in models:
        for ax, key in zip(axes, ("cvr_bias_exposure", "cvr_exposure_auc")):
            pts = [(s, summary[m][f"{s:g}"][key]) for s in shifts if key in summary[m][f"{s:g}"]]
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1]["mean"] for p in pts],
                            yerr=[p[1]["std"] for p in pts], marker="o", capsize=3, label=m)
    axes[0].axhline(0.0, color="grey", lw=0.8)
    axes[0].set(xlabel="covariate shift strength", ylabel="mean p̂CVR − mean true CVR",
                title="CVR calibration bias, exposure space")
    axes[1].set(xlabel="covariate shift strength", ylabel="AUC", title="CVR AUC, exposure space")
    axes[0].legend()
    fig.tight_layout()
    return figure_png(fig, dpi=120)


def run_report(cfg) -> dict:
    """Generate the data, train every job, write report.{json,md} and bias_vs_shift.png."""
    from distrec.train.local_spawn import spawn

    jobs = plan_jobs(cfg)
    out = report_dir(cfg)
    rep, gt = cfg.method.report, cfg.method.ground_truth
    prepare_report_data(cfg, out, jobs)
    log.info("report: %d runs (%d models x %d shifts x %d seeds) on %d workers, into %s", len(jobs),
             len(rep.models), len(rep.shifts), len(rep.seeds), cfg.trainer.num_workers, out)
    runs = spawn(train_jobs, cfg.trainer.num_workers, config_to_dict(cfg), jobs, out,
                 timeout_s=cfg.trainer.timeout_s * len(jobs))[0]

    models, shifts = [str(m) for m in rep.models], [float(s) for s in rep.shifts]
    summary = summarise(runs, models, shifts)
    meta = {"rows": gt.rows, "valid_rows": gt.valid_rows, "seeds": list(rep.seeds), "models": models,
            "shifts": shifts, "workers": cfg.trainer.num_workers}
    fs, _ = filesystem(out, cfg.data.s3_endpoint_url)
    report = {"meta": meta, "summary": summary, "runs": runs, "config": config_to_dict(cfg)}
    write_text_atomic(posixpath.join(out, "report.json"), json.dumps(report, indent=2, sort_keys=True), fs)
    write_text_atomic(posixpath.join(out, "report.md"), markdown(summary, models, shifts, meta), fs)
    with atomic_open(posixpath.join(out, "bias_vs_shift.png"), fs) as fh:
        fh.write(plot(summary, models, shifts))
    return report
