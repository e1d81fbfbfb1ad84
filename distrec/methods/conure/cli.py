"""``distrec conure run|eval|report CONFIG``: learn a task list in order, evaluate a learned
task, compare Conure with its baselines.

- ``run``: builds missing task data (``method.prepare``), checks every task, then learns the
  tasks the run has not learned yet on Ray Train workers (a later call with more tasks adds them).
- ``eval --task K``: metrics of task K (1-based index or name) from the run's checkpoint, on
  ``--workers`` local gloo processes.
- ``report``: the config's sweep (``method.strategy`` x seeds, as ``distrec sweep CONFIG`` runs it:
  trials without a result are run on Ray Tune, locally or on a cluster; ``--no-run`` runs none),
  then ``conure_report.{md,json,png}`` in the sweep's folder from each trial's run directory
  (``distrec.methods.conure.report``).
"""

from __future__ import annotations

import argparse
import json

from distrec.experiments.command_line import add_sweep_arguments, trials_exit_code


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

    rep = commands.add_parser("report", help="Conure vs fine-tune-all vs one model per task: the config's "
                                             "sweep (strategies x seeds; rerun to resume), then the report")
    add_sweep_arguments(rep, "sweep.seeds=[0,1]")
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
    from distrec.methods.conure.report import run_report
    from distrec.train.progress import configure_logging

    configure_logging()
    report = run_report(_config(args), address=args.address, run=not args.no_run)
    print(json.dumps(report["paths"], indent=2))
    return trials_exit_code(report["errored"])
