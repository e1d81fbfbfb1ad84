"""``distrec sweep CONFIG [k=v ...]``: run the config's ``sweep:`` section on Ray Tune, then write
and print its results (see ``distrec.experiments.sweep``)."""

from __future__ import annotations

import argparse

from distrec.experiments.command_line import add_sweep_arguments, trials_exit_code


def register(subparsers: argparse._SubParsersAction) -> None:
    sweep = subparsers.add_parser(
        "sweep", help="run a grid/random search x seeds on Ray Tune; rerun to resume",
        description="Runs every trial of the config's sweep: section (grid points x random points x seeds) "
                    "as Ray Train runs under Ray Tune, then writes results.json/.md/.png in "
                    "<run.output_dir>/<sweep.name>. Rerunning the same command resumes: finished trials "
                    "are kept. Swept keys take lists on the command line: sweep.grid.dense.lr=[0.001,0.01]",
    )
    add_sweep_arguments(sweep)
    sweep.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from distrec.methods import load_config, run_sweep
    from distrec.train.progress import configure_logging

    configure_logging()
    outcome = run_sweep(load_config(args.config, args.overrides), address=args.address, run=not args.no_run)
    print(outcome.markdown)
    print(f"{outcome.finished} of {outcome.total} trials have results in {outcome.dir}")
    for path in outcome.paths.values():
        print(f"  {path}")
    return trials_exit_code(outcome.errored)
