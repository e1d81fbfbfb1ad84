"""``distrec conure report CONFIG``: Conure vs its baselines, as the config's sweep.

The runs are the config's ``sweep:`` section, run by ``distrec.experiments.sweep`` exactly as
``distrec sweep CONFIG`` runs it (Ray Tune trials, on a laptop's embedded Ray or on a cluster;
rerunning resumes and never trains a finished trial again): ``method.strategy`` (conure,
finetune_all, finetune_copy, separate) x ``sweep.seeds``, each trial one ``distrec run`` = the whole task
sequence in its own run directory ``<run.output_dir>/<sweep.name>/<trial id>/``.

From each finished trial's run directory (found through the sweep's results.json) it reads the
run's registry (``conure_state.json``) and probe outputs and writes, beside the sweep's own results
files, ``conure_report.{md,json,png}``: per strategy the task x stage matrix of each task's main
metric (mean ± std over seeds), whether old tasks' probe outputs after the last stage are
bit-identical to those after their own stage (in every seed), the parameter counts, a forgetting
table (each task's metric after its own stage minus after the last stage), paired differences
(by seed) of Conure against each baseline after the task's own stage and after the last stage,
with a verdict at two standard errors, and a heat map of the matrices. Statistics:
``distrec.experiments.results`` (sample std, standard error = std / sqrt(seeds)).
"""

from __future__ import annotations

import io
import json
import math
import posixpath

import torch

from distrec.experiments.results import FINISHED, mean_std, paired_difference
from distrec.methods.conure.tasks import ConureState
from distrec.storage import atomic_open, filesystem, write_text_atomic
from distrec.train.plots import figure_png

MAIN_METRIC = {"next_item": "mrr@5", "item_rec": "mrr@5", "profile": "accuracy"}
STRATEGY_KEY = "method.strategy"
REPORT_FILES = ("conure_report.md", "conure_report.json", "conure_report.png")


def run_report(cfg, address: str | None = None, run: bool = True) -> dict:
    """Run the sweep's unfinished trials (``run=False``: none), then write the report from every
    finished trial's run. Returns the report (``report["paths"]``: the files written)."""
    from distrec.methods import run_sweep

    outcome = run_sweep(cfg, address=address, run=run)
    fs, path = filesystem(outcome.paths["results.json"])
    results = json.loads(fs.cat_file(path))
    report = build_report(trial_runs(cfg, outcome.dir, results))
    report["majority_class_accuracy"] = majority_class_accuracy(cfg)
    report["sweep"] = {"name": results["sweep"], "dir": outcome.dir, "trials": len(results["trials"]),
                       "unfinished": results["unfinished"]}
    paths = write_report(report, outcome.dir)
    report["paths"] = {**outcome.paths, **paths}
    report["errored"] = outcome.errored
    return report


def majority_class_accuracy(cfg) -> dict[str, float]:
    """Control for each profile task: the accuracy on ``method.eval_split`` of always answering
    the training split's most frequent class."""
    from distrec.methods.conure.tasks import resolve_tasks, target_counts

    out = {}
    for task in resolve_tasks(cfg):
        if task.spec.kind == "profile":
            majority = int(target_counts(task, cfg.data.s3_endpoint_url).argmax())
            evaluated = target_counts(task, cfg.data.s3_endpoint_url, str(cfg.method.eval_split))
            out[task.name] = float(evaluated[majority] / max(int(evaluated.sum()), 1))
    return out


def trial_runs(cfg, sweep_dir: str, results: dict) -> dict[str, dict[int, tuple[str, ConureState]]]:
    """``{strategy: {seed: (run_dir, state)}}`` of the sweep's finished trials."""
    runs: dict = {}
    for trial in results["trials"]:
        if trial["status"] != FINISHED:
            continue
        strategy = str(trial["overrides"].get(STRATEGY_KEY, cfg.method.strategy))
        run_dir = posixpath.join(sweep_dir, trial["id"])
        state = ConureState.load(run_dir, strategy)
        if state.tasks:
            runs.setdefault(strategy, {})[int(trial["seed"])] = (run_dir, state)
    return runs


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


def build_report(runs: dict[str, dict[int, tuple[str, ConureState]]]) -> dict:
    """``runs[strategy][seed] = (run_dir, state)`` -> the report as a JSON-able dict: per strategy
    each seed's table, the mean ± std matrix over seeds, bit-identity over seeds and forgetting."""
    report: dict = {"strategies": {}}
    for strategy, by_seed in runs.items():
        seeds = {}
        for seed, (run_dir, state) in sorted(by_seed.items()):
            entry = strategy_table(state)
            entry["run_dir"] = run_dir
            entry["old_task_outputs_bit_identical"] = probes_unchanged(run_dir, state)
            seeds[seed] = entry
        first = next(iter(seeds.values()))
        tasks = list(first["main_metric"])
        matrix, forgetting, identical = {}, {}, {}
        for name in tasks:
            stages = sorted({s for e in seeds.values() for s in e["main_metric"].get(name, {})})
            matrix[name] = {s: _stat([e["main_metric"].get(name, {}).get(s) for e in seeds.values()])
                            for s in stages}
            if stages:  # own stage (the first it was evaluated at) minus the last stage
                forgetting[name] = _stat([e["main_metric"][name][stages[0]] - e["main_metric"][name][stages[-1]]
                                          for e in seeds.values()
                                          if stages[0] in e["main_metric"].get(name, {})
                                          and stages[-1] in e["main_metric"].get(name, {})])
            same = [e["old_task_outputs_bit_identical"].get(name) for e in seeds.values()]
            identical[name] = None if any(v is None for v in same) else all(same)
        report["strategies"][strategy] = {
            "seeds": seeds, "main_metric": matrix, "forgetting": forgetting,
            "old_task_outputs_bit_identical": identical, "params": first["params"], "kinds": first["kinds"]}
    report["conure_vs"] = comparisons(report["strategies"])
    return report


BASELINES = ("finetune_all", "finetune_copy", "separate")


def comparisons(strategies: dict) -> dict:
    """``{baseline: {task: {"own": diff, "last": diff}}}``: Conure minus the baseline, paired by
    seed, after the task's own stage and after the last stage (the same stages for both)."""
    if "conure" not in strategies:
        return {}
    ours = strategies["conure"]["seeds"]
    out: dict = {}
    for baseline in (b for b in BASELINES if b in strategies):
        theirs = strategies[baseline]["seeds"]
        out[baseline] = {}
        for name, row in strategies["conure"]["main_metric"].items():
            stages = sorted(row)
            out[baseline][name] = {when: _paired(ours, theirs, name, stage)
                                   for when, stage in (("own", stages[0]), ("last", stages[-1]))}
    return out


def _paired(ours: dict, theirs: dict, task: str, stage: int) -> dict | None:
    def values(seeds):
        return {seed: e["main_metric"].get(task, {}).get(stage) for seed, e in seeds.items()
                if isinstance(e["main_metric"].get(task, {}).get(stage), (int, float))}

    diff = paired_difference(values(ours), values(theirs))
    if diff.n == 0:
        return None
    if math.isnan(diff.se):
        verdict = "n/a (one seed)"
    elif diff.mean > 2 * diff.se:
        verdict = "better"
    elif diff.mean < -2 * diff.se:
        verdict = "worse"
    else:
        verdict = "within 2 SE"
    return {"n": diff.n, "mean": diff.mean, "se": diff.se, "verdict": verdict}


def _stat(values: list) -> dict | None:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return None
    mean, std = mean_std(finite)
    return {"mean": mean, "std": None if math.isnan(std) else std, "n": len(finite)}


def _fmt(st: dict | None, signed: bool = False) -> str:
    """mean ± standard error."""
    if st is None:
        return "–"
    mean = f"{st['mean']:+.4f}" if signed else f"{st['mean']:.4f}"
    return mean if st["std"] is None else f"{mean} ± {st['std'] / math.sqrt(st['n']):.4f}"


def report_markdown(report: dict) -> str:
    sweep = report.get("sweep", {})
    lines = ["# Conure: per-task metric after each stage", "",
             "Metric: MRR@5 for next_item / item_rec tasks, accuracy for profile tasks; stage k = "
             "after learning task k; mean ± standard error over seeds.", ""]
    if sweep:
        unfinished = sweep["unfinished"]
        shown = ", ".join(unfinished[:8]) + (", ..." if len(unfinished) > 8 else "")
        lines += [f"Sweep `{sweep['name']}` ({sweep['dir']}): {sweep['trials']} of {sweep['trials'] + len(unfinished)} "
                  "trials have results" + (f"; without results yet: {shown}" if unfinished else "") + ".", ""]
    for strategy, entry in report["strategies"].items():
        table = entry["main_metric"]
        stages = sorted({s for row in table.values() for s in row})
        lines += [f"## {strategy} (seeds {', '.join(str(s) for s in entry['seeds'])})", "",
                  "| task | " + " | ".join(f"stage {s}" for s in stages) + " | outputs bit-identical |",
                  "|---" * (len(stages) + 2) + "|"]
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
    strategies = list(report["strategies"])
    if strategies:
        tasks = list(dict.fromkeys(t for e in report["strategies"].values() for t in e["forgetting"]))
        lines += ["## Forgetting: metric after the task's own stage minus after the last stage", "",
                  "(0: nothing forgotten; positive: the task got worse as later tasks were learned)", "",
                  "| task | " + " | ".join(strategies) + " |", "|---" * (len(strategies) + 1) + "|"]
        for name in tasks:
            lines.append(f"| {name} | " + " | ".join(
                _fmt(report["strategies"][s]["forgetting"].get(name), signed=True) for s in strategies) + " |")
        lines.append("")
    controls = report.get("majority_class_accuracy")
    if controls:
        lines += ["Control: always answering a profile task's most frequent training class scores "
                  + ", ".join(f"{name} {acc:.4f}" for name, acc in controls.items()) + " accuracy.", ""]
    lines += comparison_markdown(report.get("conure_vs", {}))
    return "\n".join(lines)


def comparison_markdown(vs: dict) -> list[str]:
    if not vs:
        return []
    lines = ["## Conure minus each baseline, paired by seed (mean ± SE, verdict at 2 SE)", "",
             "own: after the task's own stage (learning it; vs `separate`: transfer from earlier tasks); "
             "last: after the last stage (forgetting included).", ""]
    for baseline, tasks in vs.items():
        lines += [f"### vs {baseline}", "", "| task | own stage | last stage |", "|---|---|---|"]
        for name, cells in tasks.items():
            lines.append(f"| {name} | " + " | ".join(_fmt_paired(cells[w]) for w in ("own", "last")) + " |")
        lines.append("")
    return lines


def _fmt_paired(d: dict | None) -> str:
    if d is None:
        return "–"
    se = "" if math.isnan(d["se"]) else f" ± {d['se']:.4f}"
    return f"{d['mean']:+.4f}{se} ({d['verdict']})"


def heatmap_png(report: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    strategies = list(report["strategies"])
    fig, axes = plt.subplots(1, max(1, len(strategies)), figsize=(4.5 * max(1, len(strategies)), 3.5),
                             squeeze=False)
    for ax, strategy in zip(axes[0], strategies):
        table = report["strategies"][strategy]["main_metric"]
        tasks = list(table)
        stages = sorted({s for row in table.values() for s in row})
        grid = np.array([[table[t][s]["mean"] if table[t].get(s) else np.nan for s in stages] for t in tasks],
                        dtype=float)
        # colour per row (each task's metric has its own scale): share of that task's best value
        row_max = np.nanmax(np.where(np.isnan(grid), -np.inf, grid), axis=1, keepdims=True)
        ax.imshow(grid / np.where(row_max > 0, row_max, 1.0), cmap="viridis", aspect="auto", vmin=0, vmax=1)
        for i in range(len(tasks)):
            for j in range(len(stages)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(stages)), [f"after T{s}" for s in stages], fontsize=8)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
        ax.set_title(f"{strategy} (mean over seeds)")
    fig.tight_layout()
    return figure_png(fig, dpi=120)


def write_report(report: dict, out_dir: str) -> dict[str, str]:
    fs, path = filesystem(out_dir)
    fs.makedirs(path, exist_ok=True)
    paths = {name.rsplit(".", 1)[1]: posixpath.join(out_dir, name) for name in REPORT_FILES}
    write_text_atomic(paths["md"], report_markdown(report), fs)
    write_text_atomic(paths["json"], json.dumps(report, indent=1, default=str), fs)
    with atomic_open(paths["png"], fs, "wb") as fh:
        fh.write(heatmap_png(report))
    return paths
