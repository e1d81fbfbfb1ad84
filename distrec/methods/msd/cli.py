"""``distrec msd knowledge | distill | report CONFIG [k=v ...]``: the MSD recipe's offline jobs and
its report (the config's sweep over ``method.report.variant`` x seeds, see report.py).

CTR training itself is ``distrec run CONFIG`` (recipe ``msd``).
"""

from __future__ import annotations

import json

from distrec.experiments.command_line import add_sweep_arguments, trials_exit_code


def _config(args):
    from distrec.methods import load_config

    cfg = load_config(args.config, args.overrides)
    if cfg.run.recipe != "msd":
        from distrec.errors import ConfigError

        raise ConfigError(f"{args.config}: run.recipe is {cfg.run.recipe!r}; `distrec msd` needs recipe msd")
    return cfg


def cmd_knowledge(args) -> int:
    from distrec.methods.msd.data import ensure_imported
    from distrec.methods.msd.knowledge import run_knowledge_job
    from distrec.train.progress import configure_logging

    configure_logging()
    cfg = _config(args)
    ensure_imported(cfg)
    print(json.dumps(run_knowledge_job(cfg), indent=2))
    return 0


def cmd_distill(args) -> int:
    from distrec.methods.msd.data import distill
    from distrec.train.progress import configure_logging

    configure_logging()
    metrics = distill(_config(args))
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def cmd_report(args) -> int:
    from distrec.methods.msd.report import run_report
    from distrec.train.progress import configure_logging

    configure_logging()
    report = run_report(_config(args), address=args.address, run=not args.no_run)
    print(json.dumps(report["paths"], indent=2))
    return trials_exit_code(report["errored"])


def register(subparsers) -> None:
    msd = subparsers.add_parser("msd", help="MSD: LLM knowledge distilled into a CTR model")
    sub = msd.add_subparsers(dest="msd_command", required=True)
    for name, func, help_text in (
        ("knowledge", cmd_knowledge, "teacher LLM writes item/user knowledge (Ray Data batch job, resumable)"),
        ("distill", cmd_distill, "distil the knowledge into the student (DeepSpeed, Ray Train workers)"),
        ("report", cmd_report, "base CTR vs MSD per teacher and ablations x seeds, as the config's sweep "
                               "(rerun to resume); markdown + JSON + PNG beside its results"),
    ):
        p = sub.add_parser(name, help=help_text)
        if name == "report":
            add_sweep_arguments(p)
        else:
            p.add_argument("config")
            p.add_argument("overrides", nargs="*", help="key=value overrides")
        p.set_defaults(func=func)
