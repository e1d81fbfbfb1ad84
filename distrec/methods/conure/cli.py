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
    from distrec.methods import load_config

    return load_config(args.config, [*args.overrides, *extra])


def run_tasks(cfg) -> dict:
    from distrec.methods import train

    return train(cfg)


def _run(args) -> int:
    from distrec.train.progress import configure_logging

    configure_logging()
    metrics = run_tasks(_config(args))
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _eval(args) -> int:
    from distrec.config.load import config_to_dict
    from distrec.methods.conure.evaluate import evaluate_worker
    from distrec.train.local_spawn import spawn

    cfg = _config(args)
    results = spawn(evaluate_worker, args.workers, config_to_dict(cfg),
                    args.task, args.split)
    print(json.dumps(results[0], indent=2, sort_keys=True))
    return 0


def _report(args) -> int:
    import posixpath

    from distrec.config.load import run_dir
    from distrec.methods.conure.report import build_report, write_report
    from distrec.methods.conure.tasks import ConureState
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
