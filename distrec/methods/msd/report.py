"""``distrec msd report``: base CTR vs MSD (one student per teacher) and each ablation, over
several seeds, on the config's data: AUC / GAUC / LogLoss as mean ± std, markdown + JSON + PNG.

Knowledge is produced earlier (``distrec msd knowledge``; an LLM teacher over all of ml-100k
takes long on a CPU): ``method.report.knowledge`` maps each teacher name to its directory.
For each teacher the student is distilled once (reused when its directory exists), then every
variant trains ``trainer.epochs`` per seed, on Ray Train workers or (``local``) on local gloo
processes.
"""

from __future__ import annotations

import json
import logging
import os
import statistics

from omegaconf import OmegaConf

from distrec.config.load import config_to_dict, read_config_record, write_config_record
from distrec.errors import ConfigError
from distrec.methods.msd.config import Ablation
from distrec.storage import atomic_open, filesystem, write_text_atomic
from distrec.train.plots import figure_png

log = logging.getLogger("distrec")
ABLATIONS = {
    Ablation.no_lora: {"method.semantics.lora": False},
    Ablation.no_item_fusion: {"method.semantics.item_fusion": False},
    Ablation.no_user_knowledge: {"method.semantics.user_knowledge": False},
    Ablation.no_semantics: {"method.semantics.enabled": False},
}
METRICS = ("auc", "gauc", "logloss", "rare_items_auc", "rare_items_logloss")
HEADERS = ("AUC", "GAUC", "LogLoss", "AUC, rare items", "LogLoss, rare items")
PLOT = "report.png"


def _with(cfg, overrides: dict):
    out = OmegaConf.create(config_to_dict(cfg))
    for key, value in overrides.items():
        OmegaConf.update(out, key, value, force_add=False)
    return out


def spawned_distill(rank: int, cfg_dict: dict) -> dict:
    from distrec.methods.msd.distill import distill_worker

    return distill_worker(OmegaConf.create(cfg_dict))


def spawned_train(rank: int, cfg_dict: dict) -> dict:
    from distrec.methods.msd.recipe import train_worker

    return train_worker(OmegaConf.create(cfg_dict))


def _run(cfg, local: bool, distill: bool) -> dict:
    if local:
        from distrec.train.local_spawn import spawn

        fn = spawned_distill if distill else spawned_train
        return spawn(fn, cfg.trainer.num_workers, config_to_dict(cfg), timeout_s=cfg.trainer.timeout_s)[0]
    if distill:
        from distrec.methods.msd.data import DISTILL_ENTRY, ensure_imported
        from distrec.train.launcher import run_training

        ensure_imported(cfg)
        return run_training(cfg, DISTILL_ENTRY)
    from distrec.methods import train

    return train(cfg)


def variants(cfg) -> dict[str, dict]:
    """name -> overrides (the student path included) of every configuration to compare."""
    rep = cfg.method.report
    if not rep.knowledge:
        raise ConfigError("method.report.knowledge is empty: map each teacher name to the knowledge "
                          "directory `distrec msd knowledge` wrote, e.g. {metadata: runs/k-meta}")
    if rep.ablations_teacher not in rep.knowledge:
        raise ConfigError(f"method.report.ablations_teacher={rep.ablations_teacher!r} is not a key of "
                          f"method.report.knowledge ({sorted(rep.knowledge)})")
    out = {"base": {"method.semantics.enabled": False}}
    for teacher in rep.knowledge:
        out[f"msd[{teacher}]"] = {"method.semantics.student": _student_dir(cfg, teacher)}
    for ablation in rep.ablations:
        out[f"msd[{rep.ablations_teacher}] {ablation}"] = {
            "method.semantics.student": _student_dir(cfg, rep.ablations_teacher), **ABLATIONS[ablation]}
    return out


def _student_dir(cfg, teacher: str) -> str:
    return os.path.join(cfg.method.report.output, "students", teacher)


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    table = {}
    for name, per_seed in runs.items():
        row = {"seeds": len(per_seed)}
        for metric in METRICS:
            values = [r[metric] for r in per_seed if metric in r]
            if values:
                row[metric] = statistics.fmean(values)
                row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        table[name] = row
    return table


def markdown(table: dict[str, dict], distill: dict[str, dict], cfg) -> str:
    lines = [f"# MSD on {cfg.data.train}", "",
             f"{cfg.trainer.epochs} epoch(s)"
             f"{f' capped at {cfg.trainer.max_steps} steps' if cfg.trainer.max_steps >= 0 else ''}, "
             f"batch {cfg.data.batch_size} per worker, {cfg.trainer.num_workers} workers, seeds "
             f"{list(cfg.method.report.seeds)}, tower {cfg.model.arch}; mean ± std over seeds. Rare items: "
             f"validation rows whose item was seen fewer than {cfg.method.semantics.cache_min_freq} times in "
             f"training (the items the student encodes online).", "",
             "| variant | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 1) + "|"]
    for name, row in table.items():
        cells = [f"{row[m]:.4f} ± {row[m + '_std']:.4f}" if m in row else "n/a" for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| teacher | distillation loss before | after | steps |", "|---|---|---|---|"]
    for teacher, m in distill.items():
        lines.append(f"| {teacher} | {m.get('distill_loss_before', float('nan')):.4f} | "
                     f"{m.get('distill_loss_after', float('nan')):.4f} | {m.get('steps', '?')} |")
    return "\n".join(lines) + "\n"


def run_report(cfg, local: bool = False) -> dict:
    rep = cfg.method.report
    all_variants = variants(cfg)
    distill_metrics = {}
    for teacher, knowledge in rep.knowledge.items():
        out = _student_dir(cfg, teacher)
        meta = os.path.join(out, "distill_metrics.json")
        if not os.path.isfile(meta):
            log.info("report: distilling the %s teacher's knowledge into %s", teacher, out)
            _run(_with(cfg, {"method.knowledge.output": knowledge, "method.distill.output": out,
                             "run.name": f"report-distill-{teacher}",
                             "run.output_dir": os.path.join(rep.output, "runs")}), local, distill=True)
        with open(meta) as fh:
            distill_metrics[teacher] = json.load(fh)
    runs: dict[str, list[dict]] = {}
    paths = {}
    for name, overrides in all_variants.items():
        for seed in rep.seeds:
            slug = name.replace("[", "-").replace("]", "").replace(" ", "-")
            run_cfg = _with(cfg, {**overrides, "run.seed": seed, "run.name": f"report-{slug}-s{seed}",
                                  "run.output_dir": os.path.join(rep.output, "runs")})
            runs.setdefault(name, []).append(_finished_or_run(run_cfg, name, seed, local))
            paths = _write(cfg, runs, distill_metrics)  # after every run: partial results survive
    return paths


def _finished_or_run(run_cfg, name: str, seed: int, local: bool) -> dict:
    """The run's metrics; a rerun of the report reuses runs that finished with the same config."""
    result_path = os.path.join(run_cfg.run.output_dir, run_cfg.run.name, "report_result.json")
    config = config_to_dict(run_cfg)
    saved = read_config_record(result_path, config)
    if saved is not None:
        log.info("report: %s, seed %d finished earlier (%s)", name, seed, result_path)
        return saved["metrics"]
    log.info("report: training %s, seed %d", name, seed)
    metrics = _run(run_cfg, local, distill=False)
    metrics = {k: metrics[k] for k in (*METRICS, "num_rows", "rare_items_num_rows") if k in metrics}
    write_config_record(result_path, config, {"metrics": metrics})
    return metrics


def _write(cfg, runs: dict, distill_metrics: dict) -> dict:
    rep = cfg.method.report
    table = summarise(runs)
    result = {"variants": table, "runs": runs, "distillation": distill_metrics,
              "knowledge": dict(rep.knowledge), "config": config_to_dict(cfg)}
    fs, _ = filesystem(rep.output)
    fs.makedirs(rep.output, exist_ok=True)
    json_path, md_path = os.path.join(rep.output, "report.json"), os.path.join(rep.output, "report.md")
    write_text_atomic(json_path, json.dumps(result, indent=2, default=str), fs)
    write_text_atomic(md_path, markdown(table, distill_metrics, cfg), fs)
    png_path = os.path.join(rep.output, PLOT)
    with atomic_open(png_path, fs, "wb") as fh:
        fh.write(metrics_png(table))
    return {"json": json_path, "markdown": md_path, "png": png_path}


def metrics_png(table: dict[str, dict]) -> bytes:
    """One panel per metric: the variants' means over seeds with their std as error bars."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 0.45 * len(names) + 1.6))
    for ax, metric in zip(axes, METRICS):
        rows = [(i, table[n][metric], table[n][f"{metric}_std"]) for i, n in enumerate(names) if metric in table[n]]
        if rows:
            ys, means, stds = zip(*rows)
            ax.barh(ys, means, xerr=stds, color=["#888" if names[y] == "base" else "#3a7" for y in ys])
            low = min(m - s for _, m, s in rows)
            high = max(m + s for _, m, s in rows)
            pad = max(high - low, 1e-3) * 0.3
            ax.set_xlim(low - pad, high + pad)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names))
        ax.invert_yaxis()
        ax.set_title(f"{HEADERS[METRICS.index(metric)]} ({'lower' if 'logloss' in metric else 'higher'} is better)")
    fig.tight_layout()
    return figure_png(fig, dpi=110)
