"""``distrec stackrec stack | run | report``: StackRec's stacking, scenarios and report.

  distrec stackrec stack CONFIG SRC_CHECKPOINT OUT_RUN_DIR [k=v ...] [--method adjacent|cross]
      stack an L-block checkpoint (from a run of any world size) into a 2L-block weights-only
      checkpoint under OUT_RUN_DIR/checkpoints/; start a run from it with run.init_from=PATH
  distrec stackrec run CONFIG [k=v ...] [--variant adjacent|cross|scratch] [--launcher ray|spawn]
      run the stages of the config's scenario (ts, cl, tf) for one variant
  distrec stackrec report CONFIG [k=v ...] [--variants scratch,adjacent,cross] [--rerun]
      run the variants that have no result yet, then write report.md/json and the PNG
"""

from __future__ import annotations

import argparse
import json
import posixpath

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
    run.add_argument("--variant", choices=VARIANT_CHOICES, default=None, help="default: method.stack_method")
    run.add_argument("--launcher", choices=("ray", "spawn"), default="ray")
    run.set_defaults(func=cmd_run)

    report = commands.add_parser("report", help="scratch vs stacked: run what is missing, write the report")
    report.add_argument("config")
    report.add_argument("overrides", nargs="*")
    report.add_argument("--variants", default="scratch,adjacent,cross")
    report.add_argument("--launcher", choices=("ray", "spawn"), default="ray")
    report.add_argument("--rerun", action="store_true", help="run every variant again")
    report.add_argument("--out", default=None, help="default: method.report_dir or <run dir>/report")
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
    fresh = build_model(cfg, FeatureSchema.load(cfg.data.schema))
    path, seconds = stack_checkpoint(args.src, args.out, fresh, args.method or cfg.method.stack_method,
                                     list(cfg.method.fresh_parts))
    print(json.dumps({"checkpoint": path, "blocks": 2 * blocks, "seconds": round(seconds, 3)}))
    return 0


def cmd_run(args) -> int:
    from distrec.methods import prepare_data
    from distrec.methods.stackrec.scenario import LAUNCHERS, run_variant

    cfg = _config(args)
    prepare_data(cfg)
    result = run_variant(cfg, args.variant or cfg.method.stack_method, LAUNCHERS[args.launcher])
    print(json.dumps({k: v for k, v in result.items() if k not in ("stages", "curve")}, indent=2))
    return 0


def cmd_report(args) -> int:
    import platform

    import fsspec

    from distrec.errors import ConfigError
    from distrec.methods import prepare_data
    from distrec.methods.stackrec.report import to_markdown, write_report
    from distrec.methods.stackrec.scenario import (
        LAUNCHERS,
        read_json,
        run_variant,
        variant_dir,
    )

    cfg = _config(args)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = sorted(set(variants) - set(VARIANT_CHOICES))
    if bad:
        raise ConfigError(f"--variants: unknown {bad}; expected some of {list(VARIANT_CHOICES)}")
    prepare_data(cfg)
    results = {}
    for variant in variants:
        done = posixpath.join(variant_dir(cfg, variant), "variant.json")
        fs, path = fsspec.core.url_to_fs(done)
        if fs.exists(path) and not args.rerun:
            results[variant] = read_json(done)
        else:
            results[variant] = run_variant(cfg, variant, LAUNCHERS[args.launcher])
    out = args.out or cfg.method.report_dir or posixpath.join(cfg.run.output_dir, cfg.run.name, "report")
    machine = args.machine or f"{platform.machine()} {platform.processor() or ''}".strip()
    report = write_report(cfg, results, out, machine)
    print(to_markdown(report))
    print(f"report written to {out}")
    return 0
