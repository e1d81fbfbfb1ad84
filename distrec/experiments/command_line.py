"""Command-line pieces shared by ``distrec sweep`` and every method's ``report`` command (a report
is its config's sweep plus the method's tables)."""

from __future__ import annotations

import argparse


def add_sweep_arguments(parser: argparse.ArgumentParser, example: str = "sweep.seeds=[0,1,2]") -> None:
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help=f"key=value overrides, e.g. {example}")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to run on (default: trainer.address, RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--no-run", action="store_true", help="only rebuild the results from finished trials")


def trials_exit_code(errored: list[str]) -> int:
    """1, with what to do, when a trial failed; else 0."""
    if not errored:
        return 0
    print(f"{len(errored)} trial(s) failed: {', '.join(errored)}; rerun the same command to retry them "
          "(finished trials are kept)")
    return 1
