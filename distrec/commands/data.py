"""``distrec data synth`` and ``distrec data import``: write training data as Parquet + schema.yaml;
``distrec data inspect``: what a Parquet dataset holds, per column.

``register(subparsers)`` adds the ``data`` group; each command sets ``args.func(args) -> exit code``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from distrec.config.schema import SynthConfig
from distrec.errors import DistrecError


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="write training data (synthetic or imported)")
    commands = data.add_subparsers(dest="data_command", required=True, parser_class=_LazyEpilogParser)

    synth = commands.add_parser("synth", help="write synthetic click data")
    synth.add_argument("--out", required=True, help="output directory (local or s3://)")
    defaults = SynthConfig()
    for f in fields(SynthConfig):
        if f.name == "valid_rows":
            continue  # callers write validation data as a second dataset with another seed
        default = getattr(defaults, f.name)
        synth.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default)
    synth.add_argument("--s3-endpoint-url", default=None)
    synth.add_argument("--no-progress", action="store_true")
    synth.set_defaults(func=_synth)

    imp = commands.add_parser(
        "import", help="convert a public dataset to Parquet + schema.yaml",
        description="distrec data import FORMAT SRC OUT [--option value ...]",
        epilog_factory=_formats_help, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("format")
    imp.add_argument("src")
    imp.add_argument("out")
    imp.add_argument("options", nargs=argparse.REMAINDER, help="--key value pairs for the importer")
    imp.set_defaults(func=_import)

    inspect = commands.add_parser(
        "inspect", help="rows, files, row groups and per-column statistics of Parquet data",
        description="distrec data inspect PATH [--schema schema.yaml] [--json]: one streamed pass; per column "
                    "type, null share, distinct count (estimated above 4096), min/max/mean, list lengths")
    inspect.add_argument("path", help="a Parquet file, a directory or a glob (local or s3://)")
    inspect.add_argument("--schema", default=None, help="feature schema: roles, table sizes, label rates, checks")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.set_defaults(func=_inspect)


class _LazyEpilogParser(argparse.ArgumentParser):
    """Builds its epilog only when help is shown: the import formats' list loads every importer
    (pandas, pyarrow), too slow for every ``distrec`` start."""

    def __init__(self, *args, epilog_factory=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epilog_factory = epilog_factory

    def format_help(self) -> str:
        if self.epilog_factory is not None:
            self.epilog = self.epilog_factory()
        return super().format_help()


def _synth(args: argparse.Namespace) -> int:
    from distrec.data.synth import write_synthetic

    cfg = SynthConfig(
        **{f.name: getattr(args, f.name) for f in fields(SynthConfig) if f.name != "valid_rows"}
    )
    try:
        write_synthetic(args.out, cfg, s3_endpoint_url=args.s3_endpoint_url, progress=not args.no_progress)
    except DistrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {cfg.rows} rows and schema.yaml to {args.out}")
    return 0


def _parse_value(text: str) -> object:
    if "," in text:  # "0.8,0.1,0.1" -> a tuple of numbers; other lists stay text (e.g. "gender,age")
        parts = [_parse_value(p) for p in text.split(",")]
        if all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts):
            return tuple(parts)
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None, "none": None}.get(text.lower(), text)


def parse_options(tokens: list[str]) -> dict[str, object]:
    """``--max-rows 10 --fast`` -> {"max_rows": 10, "fast": True}."""
    out: dict[str, object] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--"):
            raise ValueError(f"expected an --option, got {tok!r}")
        key, eq, value = tok[2:].partition("=")
        key = key.replace("-", "_")
        if eq:
            out[key] = _parse_value(value)
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            out[key] = _parse_value(tokens[i + 1])
            i += 1
        else:
            out[key] = True
        i += 1
    return out


def _import(args: argparse.Namespace) -> int:
    try:
        from distrec.methods import importers

        IMPORTERS = importers()
    except ImportError as exc:
        print(f"error: no importers available: {exc}", file=sys.stderr)
        return 2
    if args.format not in IMPORTERS:
        known = ", ".join(sorted(IMPORTERS))
        print(f"error: unknown format {args.format!r}; known formats: {known}", file=sys.stderr)
        return 2
    try:
        kwargs = parse_options(args.options)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = importer_options(IMPORTERS[args.format])
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        known = ", ".join(f"--{k.replace('_', '-')}" for k in options)
        print(f"error: {args.format} import: unknown option(s) "
              f"{', '.join('--' + k.replace('_', '-') for k in unknown)}; its options: {known}", file=sys.stderr)
        return 2
    try:
        IMPORTERS[args.format](args.src, args.out, **kwargs)
    except DistrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"imported {args.format} from {args.src} to {args.out}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import json

    from distrec.data.inspect import format_report, inspect_parquet
    from distrec.data.schema import FeatureSchema

    try:
        schema = FeatureSchema.load(args.schema) if args.schema else None
        report = inspect_parquet(args.path, schema)
    except DistrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 1 if report.get("problems") else 0


def importer_options(importer) -> dict[str, object]:
    """An importer's keyword options and their defaults (everything after ``src, out``)."""
    import inspect

    return {name: p.default for name, p in inspect.signature(importer).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _formats_help() -> str:
    """Each format, the first line of its module's docstring and its options (with defaults)."""
    import inspect

    try:
        from distrec.methods import importers

        IMPORTERS = importers()
    except ImportError:
        return ""
    lines, first_name = ["formats:"], {}
    for name, importer in IMPORTERS.items():
        if importer in first_name:
            lines.append(f"  {name}: another name for {first_name[importer]}")
            continue
        first_name[importer] = name
        summary = (inspect.getmodule(importer).__doc__ or "").strip().splitlines()[0]
        options = " ".join(f"--{k.replace('_', '-')} {_shown(v)}" for k, v in importer_options(importer).items())
        lines += [f"  {name}: {summary}", f"      {options}"]
    return "\n".join(lines)


def _shown(default: object) -> str:
    """A default as it would be typed on the command line."""
    if isinstance(default, (tuple, list)):
        return ",".join(str(v) for v in default)
    return "null" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
