"""``distrec egean synth`` (ground-truth impressions) and ``distrec egean report CONFIG`` (the config's
sweep, then the EGEAN tables: see ``distrec.methods.egean.report``)."""

from __future__ import annotations

import argparse
from dataclasses import fields

from distrec.experiments.command_line import add_sweep_arguments, trials_exit_code
from distrec.methods.egean.config import GroundTruthConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    egean = subparsers.add_parser("egean", help="EGEAN recipe tools: ground-truth data, benchmark report")
    commands = egean.add_subparsers(dest="egean_command", required=True)

    synth = commands.add_parser(
        "synth", help="write impressions with a known conversion probability (train/, valid/, schema.yaml)")
    synth.add_argument("--out", required=True, help="output directory (local or s3://)")
    defaults = GroundTruthConfig()
    for f in fields(GroundTruthConfig):
        default = getattr(defaults, f.name)
        synth.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default)
    synth.add_argument("--s3-endpoint-url", default=None)
    synth.add_argument("--no-progress", action="store_true")
    synth.set_defaults(func=_synth)

    report = commands.add_parser(
        "report", help="run the config's sweep (variants x shift strengths x seeds on ground-truth data, "
                       "as `distrec sweep`; rerun to resume), then write report.md, report.json and "
                       "bias_vs_shift.png beside its results")
    add_sweep_arguments(report, "sweep.seeds=[0,1]")
    report.set_defaults(func=_report)


def _synth(args: argparse.Namespace) -> int:
    from distrec.methods.egean.ground_truth import write_ground_truth

    cfg = GroundTruthConfig(**{f.name: getattr(args, f.name) for f in fields(GroundTruthConfig)})
    write_ground_truth(args.out, cfg, s3_endpoint_url=args.s3_endpoint_url, progress=not args.no_progress)
    print(f"wrote {cfg.rows} training and {cfg.valid_rows} validation impressions (shift {cfg.shift:g}) "
          f"and schema.yaml to {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from distrec.methods import load_config
    from distrec.methods.egean.report import report_dir, run_report
    from distrec.train.progress import configure_logging

    configure_logging()
    cfg = load_config(args.config, args.overrides)
    report = run_report(cfg, address=args.address, run=not args.no_run)
    meta = report["meta"]
    print(f"{meta['finished']} of {meta['trials']} trials have results; "
          f"wrote report.md, report.json and bias_vs_shift.png to {report_dir(cfg)}")
    return trials_exit_code(report["errored"])
