"""The ``distrec`` command line."""

from __future__ import annotations

import argparse
import importlib
import sys

from distrec.errors import DistrecError
from distrec.methods import RECIPES

# Modules adding command groups (with every method's own, from the registry); each has
# register(subparsers) and imports heavy libraries only inside its handlers, so
# `distrec --help` stays fast.
COMMAND_MODULES = ["distrec.commands.data", "distrec.commands.jobs", "distrec.commands.sweep"]


def _config(args):
    from distrec.methods import load_config

    return load_config(args.config, args.overrides)


def cmd_run(args) -> int:
    from distrec.config.load import run_dir
    from distrec.methods import train
    from distrec.train.progress import configure_logging, run_summary

    configure_logging()
    cfg = _config(args)
    from ray.train import TrainingFailedError

    try:
        metrics = train(cfg)
    except TrainingFailedError as exc:
        # The error carries every failed worker's traceback; the driver's own frames add nothing.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(run_summary(run_dir(cfg), metrics), flush=True)
    return 0


def cmd_eval(args) -> int:
    import json

    from distrec.methods import evaluate
    from distrec.train.progress import configure_logging

    configure_logging()
    cfg = _config(args)
    from ray.train import TrainingFailedError

    try:
        metrics = evaluate(cfg, args.checkpoint, args.split)
    except TrainingFailedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(metrics, indent=2, default=str), flush=True)
    return 0


def cmd_plan(args) -> int:
    from distrec.commands.plan import build_plan_report
    from distrec.methods import prepare_data
    from distrec.train.progress import configure_logging

    configure_logging()
    cfg = _config(args)
    prepare_data(cfg)
    print(build_plan_report(cfg, args.world_size, args.device, args.local_world_size))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train a config on Ray Train workers")
    run.add_argument("config")
    run.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.num_workers=2")
    run.set_defaults(func=cmd_run)

    evaluate = sub.add_parser("eval", help="exact metrics of a checkpoint on a split (the recipe's own evaluation)")
    evaluate.add_argument("config")
    evaluate.add_argument("overrides", nargs="*")
    evaluate.add_argument("--checkpoint", required=True,
                          help="a checkpoint directory, or a run directory (its best weights, else its latest)")
    evaluate.add_argument("--split", default="test", help="test, valid (data.test / data.valid) or a Parquet path")
    evaluate.set_defaults(func=cmd_eval)

    plan = sub.add_parser("plan", help="print the sharding plan and per-rank memory, no training")
    plan.add_argument("config")
    plan.add_argument("overrides", nargs="*")
    plan.add_argument("--world-size", type=int, default=None, help="default: trainer.num_workers")
    plan.add_argument("--device", choices=["cpu", "cuda"], default=None)
    plan.add_argument("--local-world-size", type=int, default=None,
                      help="workers per host (table_row_wise keeps a table on one host); default: all on one")
    plan.set_defaults(func=cmd_plan)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    for recipe in RECIPES.values():
        recipe.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except DistrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
