"""``distrec conure run|eval|report CONFIG``: learn a task list in order, evaluate a learned
task, compare Conure with its baselines.

- ``run``: builds missing task data (``method.prepare``), checks every task, then learns the
  tasks the run has not learned yet on Ray Train workers (a later call with more tasks adds them).
- ``eval --task K``: metrics of task K (1-based index or name) from the run's checkpoint, on
  ``--workers`` local gloo processes.
- ``report``: runs each strategy (conure, finetune_all, separate) whose run lacks tasks
  (``--no-run`` skips that), then writes ``<run_dir>/report/conure_report.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json

STRATEGY_SUFFIX = {"conure": "", "finetune_all": "-finetune_all", "separate": "-separate"}


def register(subparsers: argparse._SubParsersAction) -> None:
    conure = subparsers.add_parser("conure", help="Conure: continual user representations by pruning")
    commands = conure.add_subparsers(dest="conure_command", required=True)

    run = commands.add_parser("run", help="learn the config's tasks in order (train, prune, retrain)")
    run.add_argument("config")
    run.add_argument("overrides", nargs="*")
    run.set_defaults(func=_run)

    ev = commands.add_parser("eval", help="evaluate one learned task")
    ev.add_argument("config")
    ev.add_argument("overrides", nargs="*")
    ev.add_argument("--task", required=True, help="1-based task index or task name")
    ev.add_argument("--split", default="test", choices=["train", "valid", "test"])
    ev.add_argument("--workers", type=int, default=1)
    ev.set_defaults(func=_eval)

    rep = commands.add_parser("report", help="Conure vs fine-tune-all vs one model per task")
    rep.add_argument("config")
    rep.add_argument("overrides", nargs="*")
    rep.add_argument("--no-run", action="store_true", help="report existing runs only")
    rep.set_defaults(func=_report)


def _config(args, extra=()):
    from distrec.config.load import load_config

    return load_config(args.config, [*args.overrides, *extra])


def prepare_tasks(cfg) -> None:
    """Build the task datasets with ``method.prepare`` when T1's schema is missing."""
    import posixpath

    from omegaconf import OmegaConf

    from distrec.data.importers import IMPORTERS
    from distrec.data.storage import filesystem
    from distrec.errors import ConfigError
    from distrec.recipes.conure_tasks import task_data_path

    prepare, method = cfg.method.prepare, cfg.method
    if prepare is None or not method.tasks:
        return
    fs, p = filesystem(posixpath.join(task_data_path(method, method.tasks[0]), "schema.yaml"))
    if fs.exists(p):
        return
    if not method.data_root:
        raise ConfigError("method.prepare needs method.data_root (where the task datasets go)")
    if prepare.importer not in IMPORTERS:
        raise ConfigError(f"method.prepare.importer: unknown {prepare.importer!r}; known: {sorted(IMPORTERS)}")
    options = OmegaConf.to_container(prepare.options) if prepare.get("options") else {}
    IMPORTERS[prepare.importer](prepare.src, method.data_root, max_len=prepare.max_len, overwrite=True, **options)


def run_tasks(cfg) -> dict:
    from distrec.recipes.conure_tasks import resolve_tasks
    from distrec.train.launcher import run_training

    prepare_tasks(cfg)
    resolve_tasks(cfg)  # every task's files and kinds, before any worker starts
    return run_training(cfg)


def _run(args) -> int:
    from distrec.train.progress import configure_logging

    configure_logging()
    metrics = run_tasks(_config(args))
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _eval(args) -> int:
    from omegaconf import OmegaConf

    from distrec.recipes.conure_eval import evaluate_worker
    from distrec.train.local_spawn import spawn

    cfg = _config(args)
    results = spawn(evaluate_worker, args.workers, OmegaConf.to_container(cfg, resolve=True),
                    args.task, args.split)
    print(json.dumps(results[0], indent=2, sort_keys=True))
    return 0


def _report(args) -> int:
    import posixpath

    from distrec.config.load import run_dir
    from distrec.recipes.conure_report import build_report, write_report
    from distrec.recipes.conure_tasks import ConureState
    from distrec.train.progress import configure_logging

    configure_logging()
    base = _config(args)
    runs = {}
    for strategy, suffix in STRATEGY_SUFFIX.items():
        cfg = _config(args, [f"method.strategy={strategy}", f"run.name={base.run.name}{suffix}"])
        state = ConureState.load(run_dir(cfg), strategy)
        if len(state.tasks) < len(cfg.method.tasks) and not args.no_run:
            run_tasks(cfg)
            state = ConureState.load(run_dir(cfg), strategy)
        if state.tasks:
            runs[strategy] = (run_dir(cfg), state)
    paths = write_report(build_report(runs), posixpath.join(run_dir(base), "report"))
    print(json.dumps(paths, indent=2))
    return 0
