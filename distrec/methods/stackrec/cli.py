"""``distrec stackrec stack | run | report``: StackRec's stacking, scenarios and report.

  distrec stackrec stack CONFIG SRC_CHECKPOINT OUT_RUN_DIR [k=v ...] [--method adjacent|cross]
      stack an L-block checkpoint (from a run of any world size) into a 2L-block weights-only
      checkpoint under OUT_RUN_DIR/checkpoints/; start a run from it with run.init_from=PATH
  distrec stackrec run CONFIG [k=v ...] [--variant adjacent|cross|scratch] [--launcher ray|spawn]
      run the stages of the config's scenario (ts, cl, tf) for one variant (default: method.variant)
  distrec stackrec report CONFIG [k=v ...] [--variants scratch,adjacent] [--address ADDR] [--no-run]
      the config's sweep (method.variant x seeds, = ``distrec sweep CONFIG``): run the trials that
      have no result yet on Ray Tune (locally or on a cluster; rerun to resume), then write
      report.md/json and the PNG next to its results (report.py)
"""

from __future__ import annotations

import argparse
import json

from distrec.experiments.command_line import add_sweep_arguments, trials_exit_code

VARIANT_CHOICES = ("adjacent", "cross", "scratch")


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("stackrec", help="StackRec: stacking, scenarios, report")
    commands = group.add_subparsers(dest="stackrec_command", required=True)

    stack = commands.add_parser("stack", help="stack an L-block checkpoint into 2L blocks")
    stack.add_argument("config")
    stack.add_argument("src", help="checkpoint directory (checkpoints/step-N) of an L-block run")
    stack.add_argument("out", help="run directory to write the 2L checkpoint under")
    stack.add_argument("overrides", nargs="*")
    stack.add_argument("--method", choices=("adjacent", "cross"), default=None,
                       help="default: method.stack_method")
    stack.set_defaults(func=cmd_stack)

    run = commands.add_parser("run", help="run one variant of the config's scenario")
    run.add_argument("config")
    run.add_argument("overrides", nargs="*")
    run.add_argument("--variant", choices=VARIANT_CHOICES, default=None, help="default: method.variant")
    run.add_argument("--launcher", choices=("ray", "spawn"), default="ray")
    run.set_defaults(func=cmd_run)

    report = commands.add_parser("report", help="scratch vs stacked x seeds, as the config's sweep: run what is "
                                 "missing (rerun to resume), then write the report")
    add_sweep_arguments(report)
    report.add_argument("--variants", default=None, help="e.g. scratch,adjacent (default: the config's "
                        "sweep.grid.method.variant)")
    report.add_argument("--out", default=None, help="default: method.report_dir or the sweep's directory")
    report.add_argument("--machine", default=None, help="machine description for the report")
    report.set_defaults(func=cmd_report)


def _config(args):
    from distrec.methods import load_config
    from distrec.train.progress import configure_logging

    configure_logging()
    return load_config(args.config, args.overrides)


def cmd_stack(args) -> int:
    import torch

    from distrec.data.schema import FeatureSchema
    from distrec.methods.stackrec.recipe import build_model
    from distrec.methods.stackrec.stacking import (
        count_blocks,
        read_model_state,
        stack_checkpoint,
    )

    cfg = _config(args)
    blocks = count_blocks(read_model_state(args.src))
    cfg.model.blocks = 2 * blocks
    torch.manual_seed(cfg.run.seed)
    fresh = build_model(cfg, FeatureSchema.load(cfg.data.schema, cfg.data.s3_endpoint_url))
    path, seconds = stack_checkpoint(args.src, args.out, fresh, args.method or cfg.method.stack_method,
                                     list(cfg.method.fresh_parts))
    print(json.dumps({"checkpoint": path, "blocks": 2 * blocks, "seconds": round(seconds, 3)}))
    return 0


def cmd_run(args) -> int:
    from distrec.methods import prepare_data
    from distrec.methods.stackrec.scenario import LAUNCHERS, run_variant

    cfg = _config(args)
    prepare_data(cfg)
    result = run_variant(cfg, args.variant or str(cfg.method.variant), LAUNCHERS[args.launcher])
    print(json.dumps({k: v for k, v in result.items() if k not in ("stages", "curve")}, indent=2))
    return 0


def cmd_report(args) -> int:
    from distrec.errors import ConfigError
    from distrec.methods.stackrec.report import run_report, to_markdown

    if args.variants is not None:  # a shorthand for the sweep's grid
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        bad = sorted(set(variants) - set(VARIANT_CHOICES))
        if bad or not variants:
            raise ConfigError(f"--variants: unknown {bad}; expected some of {list(VARIANT_CHOICES)}")
        args.overrides = [*args.overrides, f"sweep.grid.method.variant=[{','.join(variants)}]",
                          f"sweep.baseline.method.variant={'scratch' if 'scratch' in variants else variants[0]}"]
    report, out, errored = run_report(_config(args), address=args.address, run=not args.no_run, out=args.out,
                                      machine=args.machine)
    print(to_markdown(report))
    print(f"report written to {out}")
    return trials_exit_code(errored)
