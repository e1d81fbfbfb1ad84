"""``distrec sweep``: a config's ``sweep:`` section run as a Ray Tune experiment of Ray Train runs.

Design
- Trials are expanded here, not by Tune: (grid points x seeded random points) x seeds, each the
  base config with its overrides merged in (``trials.py``), type-checked before Ray starts. Tune
  sees one grid axis, the trial id, so the trial set is explicit and the same on every rerun.
- Each trial is a Tune function trainable that calls ``distrec.methods.train_trial(trial_cfg)``:
  ``distrec.methods.train`` (= ``distrec run``), the Ray-Train-inside-Tune pattern, or the recipe's
  ``Recipe.trial`` hook when a trial is more than one run (StackRec: the stages of a variant).
  The trainable reserves almost no CPU (``TRIAL_DRIVER_CPUS``);
  the trial's Ray Train workers take ``trainer.num_workers x cpus_per_worker`` each, and at most
  ``sweep.max_concurrent`` trials run at once (the embedded Ray is sized for that many).
- Folders: ``<run.output_dir>/<sweep.name>/`` holds one run directory per trial
  (``run.name = <sweep.name>/<trial id>``: checkpoints, metrics.jsonl, ``trial.json``), Tune's
  experiment state (``tune-<hash of the trial set>/``) and the results files (``results.py``).
- Intermediate results: while the run trains, the trainable reads the run's ``metrics.jsonl``
  every ``sweep.poll_s`` seconds and reports each new evaluation (with ``step``) to Tune; the final
  metrics are reported when the run ends. ``sweep.asha`` stops trials early with Tune's ASHA
  scheduler on these reports (``time_attr="step"``, ``max_t=trainer.max_steps``): a stopped
  trial's Tune actor is killed, which takes its Ray Train run down with it. ASHA therefore acts at
  evaluation granularity (``trainer.eval_every``) and needs a step budget (``trainer.max_steps``).
- Resume: rerunning the same command restores the Tune experiment (``Tuner.restore`` with
  ``resume_unfinished`` and ``restart_errored``): finished trials are not run again; interrupted
  or failed ones start again, continuing from their run's latest checkpoint (``run.resume``).
  Independently of Tune's state, a trial whose ``trial.json`` holds a result for the same config
  reports that result without training, so a result is never computed twice, even when the sweep
  grows (a changed trial set starts a new Tune experiment, and the finished trials are reused).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import threading
from dataclasses import dataclass
from typing import Callable

from omegaconf import DictConfig

from distrec.config.load import config_to_dict
from distrec.errors import ConfigError
from distrec.experiments.results import (
    FINISHED,
    STOPPED_EARLY,
    collect_records,
    write_results,
)
from distrec.experiments.trials import (
    Trial,
    baseline_point,
    expand_trials,
    fingerprint,
    read_trial_record,
    sweep_dir,
    trial_config,
    trial_run_dir,
    write_trial_record,
)

log = logging.getLogger("distrec")
TRIAL_DRIVER_CPUS = 0.01  # the Tune trainable only waits on its Ray Train run


@dataclass
class SweepPlan:
    cfg: DictConfig  # the base config, with the sweep section
    dir: str  # <run.output_dir>/<sweep.name>
    trials: list[Trial]
    configs: dict[str, DictConfig]  # trial id -> its config
    baseline_index: int  # into the sweep's points

    def fingerprints(self) -> dict[str, dict]:
        return {t.id: fingerprint(self.configs[t.id]) for t in self.trials}

    def run_dirs(self) -> dict[str, str]:
        return {t.id: trial_run_dir(self.configs[t.id]) for t in self.trials}


@dataclass
class SweepOutcome:
    dir: str
    paths: dict[str, str]  # result file name -> path
    markdown: str
    finished: int
    total: int
    errored: list[str]  # trial ids that failed in this session


def plan_sweep(cfg: DictConfig) -> SweepPlan:
    """Every trial and its config, checked; nothing runs."""
    sweep = cfg.sweep
    if not sweep.metric:
        raise ConfigError("sweep.metric must name a metric the runs report, e.g. auc")
    if sweep.max_concurrent < 1:
        raise ConfigError(f"sweep.max_concurrent must be at least 1, got {sweep.max_concurrent}")
    if sweep.asha and cfg.trainer.max_steps <= 0:
        raise ConfigError("sweep.asha needs a step budget: set trainer.max_steps (ASHA's max_t)")
    if sweep.asha and not 0 < sweep.asha_grace_steps <= cfg.trainer.max_steps:
        raise ConfigError(f"sweep.asha_grace_steps must be in 1..trainer.max_steps, got {sweep.asha_grace_steps}")
    trials = expand_trials(cfg)
    points = []
    for trial in trials:
        if trial.point not in points:
            points.append(trial.point)
    baseline_index = baseline_point(points, dict(sweep.baseline))
    configs = {t.id: trial_config(cfg, t) for t in trials}
    return SweepPlan(cfg, sweep_dir(cfg), trials, configs, baseline_index)


@dataclass(frozen=True)
class TrialRunner:
    """What a trial is, given by the layer above (``distrec.methods.run_sweep``): ``prepare(cfg)``
    makes a trial's data exist (on the driver, before any trial starts), ``train(cfg)`` trains it
    and returns its final metrics (in the trial's Tune actor: a module-level function)."""

    prepare: Callable
    train: Callable


def run_sweep(cfg: DictConfig, runner: TrialRunner, address: str | None = None, run: bool = True) -> SweepOutcome:
    """Run the sweep's unfinished trials (``run=False``: none), then write its results."""
    plan = plan_sweep(cfg)
    errored = _run_trials(plan, runner, address) if run else []
    records = collect_records(plan.trials, plan.fingerprints(), plan.run_dirs())
    sweep = cfg.sweep
    paths, markdown = write_results(plan.dir, sweep.name, plan.trials, records, sweep.metric, str(sweep.mode),
                                    plan.baseline_index)
    return SweepOutcome(plan.dir, paths, markdown, len(records), len(plan.trials), errored)


# --- Tune --------------------------------------------------------------------------------------


def _run_trials(plan: SweepPlan, runner: TrialRunner, address: str | None) -> list[str]:
    from ray import tune

    from distrec.train.launcher import ensure_ray

    for config in plan.configs.values():  # before any trial starts: concurrent trials must not race to write data
        runner.prepare(config)
    sweep, configs = plan.cfg.sweep, list(plan.configs.values())
    per_trial = max(c.trainer.num_workers * c.trainer.cpus_per_worker for c in configs) + TRIAL_DRIVER_CPUS
    ensure_ray(address or plan.cfg.trainer.address, sweep.max_concurrent * per_trial,
               any(c.trainer.use_gpu for c in configs))
    # the trainable resolves config paths against the directory the sweep started in, as `distrec run` does
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")

    fingerprints = plan.fingerprints()
    specs = {t.id: {"config": config_to_dict(plan.configs[t.id]), "fingerprint": fingerprints[t.id],
                    "point": t.point, "seed": t.seed} for t in plan.trials}
    options = {"metric": sweep.metric, "poll_s": float(sweep.poll_s), "train": runner.train,
               "report_below_step": plan.cfg.trainer.max_steps if sweep.asha else -1}
    trainable = tune.with_resources(tune.with_parameters(run_trial, specs=specs, options=options),
                                    {"CPU": TRIAL_DRIVER_CPUS})
    experiment = _experiment_name(specs)
    path = posixpath.join(plan.dir, experiment)
    if tune.Tuner.can_restore(path):
        log.info("sweep %s: restoring %s (finished trials are kept)", sweep.name, path)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([t.id for t in plan.trials])},
            tune_config=tune.TuneConfig(max_concurrent_trials=sweep.max_concurrent, scheduler=_scheduler(plan),
                                        reuse_actors=False, trial_name_creator=_trial_name,
                                        trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=experiment, storage_path=plan.dir,
                                      failure_config=tune.FailureConfig(max_failures=sweep.max_failures)),
        )
    grid = tuner.fit()
    errored = sorted(r.config["trial"] for r in grid if r.error is not None)
    if sweep.asha:
        _record_stopped_trials(plan, fingerprints, errored)
    return errored


def _scheduler(plan: SweepPlan):
    sweep = plan.cfg.sweep
    if not sweep.asha:
        return None
    from ray.tune.schedulers import ASHAScheduler

    # stop_last_trials=False: reaching max_t ends a trial by itself, never by a stop that could
    # cut its final evaluation short
    return ASHAScheduler(time_attr="step", metric=sweep.metric, mode=str(sweep.mode),
                         max_t=plan.cfg.trainer.max_steps, grace_period=sweep.asha_grace_steps,
                         reduction_factor=sweep.asha_reduction_factor, stop_last_trials=False)


def _trial_name(trial) -> str:
    return trial.config["trial"]


def _experiment_name(specs: dict) -> str:
    digest = hashlib.sha1(json.dumps(sorted((k, v["fingerprint"]) for k, v in specs.items()), sort_keys=True,
                                     default=str).encode()).hexdigest()[:10]
    return f"tune-{digest}"


def _record_stopped_trials(plan: SweepPlan, fingerprints: dict[str, dict], errored: list[str]) -> None:
    """Trials ASHA stopped end without a record: keep their last evaluation as one, marked."""
    for trial in plan.trials:
        run_dir = trial_run_dir(plan.configs[trial.id])
        if trial.id in errored or read_trial_record(run_dir, fingerprints[trial.id]) is not None:
            continue
        evals = [r for r in metric_records(run_dir) if plan.cfg.sweep.metric in r]
        if evals:
            write_trial_record(run_dir, fingerprints[trial.id], trial, STOPPED_EARLY, evals[-1])


# --- the trainable (runs in a Tune actor) ------------------------------------------------------


def run_trial(config: dict, specs: dict, options: dict) -> None:
    """One trial: its stored result when it has one, else train it (continuing from its latest
    checkpoint after an interruption), store the result and report it to Tune."""
    from omegaconf import OmegaConf
    from ray import tune

    from distrec.train.checkpoint import latest_checkpoint

    spec = specs[config["trial"]]
    trial = Trial(config["trial"], spec["point"], spec["seed"])
    cfg = OmegaConf.create(spec["config"])
    run_dir = trial_run_dir(cfg)
    done = read_trial_record(run_dir, spec["fingerprint"])
    if done is not None:
        log.info("trial %s: reusing its stored result", trial.id)
        metrics = done["metrics"]
    else:
        if latest_checkpoint(run_dir) is not None:
            cfg.run.resume = True
        metrics = _train_reporting(cfg, options)
        write_trial_record(run_dir, spec["fingerprint"], trial, FINISHED, metrics)
    tune.report(_numbers(metrics))


def _train_reporting(cfg, options: dict) -> dict:
    """The trial (``train_trial(cfg)``) in a thread; meanwhile each new evaluation in the run's
    metrics.jsonl goes to Tune (a trial hook whose runs live deeper reports its final metrics only)."""
    from ray import tune

    run_dir = trial_run_dir(cfg)
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["metrics"] = options["train"](cfg)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the trainable's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="distrec-trial", daemon=True)
    seen = len(metric_records(run_dir))  # an earlier attempt's records were reported then
    worker.start()
    while worker.is_alive():
        worker.join(options["poll_s"])
        records = metric_records(run_dir)
        for record in records[seen:]:
            below = options["report_below_step"] < 0 or record.get("step", 0) < options["report_below_step"]
            if options["metric"] in record and below:
                tune.report(_numbers(record))
        seen = max(seen, len(records))
    if "error" in outcome:
        raise outcome["error"]
    return outcome["metrics"]


def metric_records(run_dir: str) -> list[dict]:
    """The complete lines of the run's metrics.jsonl (none before it exists); the run may be
    appending one as we read."""
    from distrec.storage import filesystem

    fs, path = filesystem(posixpath.join(run_dir, "metrics.jsonl"))
    try:
        text = fs.cat_file(path).decode()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
