"""``distrec sweep CONFIG [k=v ...]``: run the config's ``sweep:`` section on Ray Tune, then write
and print its results (see ``distrec.experiments.sweep``)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    sweep = subparsers.add_parser(
        "sweep", help="run a grid/random search x seeds on Ray Tune; rerun to resume",
        description="Runs every trial of the config's sweep: section (grid points x random points x seeds) "
                    "as Ray Train runs under Ray Tune, then writes results.json/.md/.png in "
                    "<run.output_dir>/<sweep.name>. Rerunning the same command resumes: finished trials "
                    "are kept. Swept keys take lists on the command line: sweep.grid.dense.lr=[0.001,0.01]",
    )
    sweep.add_argument("config")
    sweep.add_argument("overrides", nargs="*", help="key=value overrides, e.g. sweep.seeds=[0,1,2]")
    sweep.add_argument("--address", default=None,
                       help="Ray cluster to run on (default: trainer.address, RAY_ADDRESS, else a local Ray)")
    sweep.add_argument("--no-run", action="store_true", help="only rebuild the results from finished trials")
    sweep.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from distrec.experiments.sweep import run_sweep
    from distrec.methods import load_config
    from distrec.train.progress import configure_logging

    configure_logging()
    outcome = run_sweep(load_config(args.config, args.overrides), address=args.address, run=not args.no_run)
    print(outcome.markdown)
    print(f"{outcome.finished} of {outcome.total} trials have results in {outcome.dir}")
    for path in outcome.paths.values():
        print(f"  {path}")
    if outcome.errored:
        print(f"{len(outcome.errored)} trial(s) failed: {', '.join(outcome.errored)}; rerun the same command "
              "to retry them (finished trials are kept)")
        return 1
    return 0
