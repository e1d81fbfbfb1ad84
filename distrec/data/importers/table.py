"""Any click table (CSV/TSV/Parquet) + a feature spec (--spec) -> Parquet + schema.yaml for CTR/EGEAN.

Sources: one file, a glob or a directory, local or s3://; the output is the layout the CTR and
EGEAN recipes read.

    distrec data import table SRC OUT --spec SPEC.yaml
    distrec data import table SRC OUT --label click --categorical user_id,item_id --numeric price

The spec (``distrec/data/importers/table_spec.py``, ``configs/data/table-spec.example.yaml``) says
per column: categorical (vocabulary with min_count and an out-of-vocabulary id, or hashing;
multi-hot with a separator), numeric (fill; standard/min-max/log normalisation or buckets),
sequence (separator, max_len, a table shared with another column), label (one: CTR; click and
conversion: EGEAN/ESMM), timestamp; a group key (GAUC); and the split: random (seeded, by row),
hash (of a key column: all rows of a user in one split), time (cut-offs given, or at the
fractions' quantiles of a sample of the times: the split is exact in time, its sizes near the
fractions), or given files. The options build a spec for the simple cases (labels, categorical
columns by vocabulary, numeric columns standardised with missing values at the mean,
``--separator``-separated sequences; a seeded random split by ``--split`` fractions).

Streaming, bounded memory: a statistics pass (every row is checked: columns present, numbers
parse, labels in [0, 1], times readable; the training rows are counted: vocabularies, moments,
quantile samples), then a write pass, batch by batch (8 MiB CSV blocks, Parquet record batches);
a split by time with fractions reads the time column once more first. Nothing is written before
the statistics pass has read the whole input. Memory: the vocabularies (one entry per distinct
value) and fixed-size samples; see ``table_transform``. Text files are read line by line: a
quoted field with a newline inside is not supported (line numbers in errors would be wrong).

Output: ``train/ valid/ test/part-*.parquet`` (a split with fraction 0 is left out), ``schema.yaml``,
``transform.yaml`` and ``vocabularies/*.parquet`` (see ``table_transform``: ``load_transform(out)
.encode(raw_rows)`` maps new raw rows the same way).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from distrec.data.importers.common import (
    DEFAULT_ROW_GROUP_SIZE,
    DEFAULT_ROWS_PER_FILE,
    ImportOutput,
    Progress,
    WriteOptions,
    csv_batches,
    input_files,
    time_values,
    uniform_hash,
)
from distrec.data.importers.table_spec import TableSpec, load_spec, parse_spec
from distrec.data.importers.table_transform import (
    SAMPLE_SIZE,
    TRANSFORM_FILE,
    Sample,
    TableStatistics,
    stable_group_ids,
)
from distrec.data.importers.text_format import (
    delimiter_name,
    detect_layout,
    interactions_command,
    looks_like_event_log,
)
from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError, DataError
from distrec.storage import filesystem

SPLIT_NAMES = ("train", "valid", "test")


def import_table(
    src: str,
    out: str,
    *,
    spec: str | None = None,
    label: str | None = None,
    categorical: str | None = None,
    numeric: str | None = None,
    sequence: str | None = None,
    separator: str = "^",
    group_key: str | None = None,
    delimiter: str | None = None,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    overwrite: bool = False,
    progress_every_s: float = 10.0,
) -> FeatureSchema:
    """Import the table ``src`` (with split by files: ``src`` is unused, the spec names the files)
    by the spec file ``spec``, or by the column options when there is none."""
    if src:  # named first when missing (with a split by files the spec names the inputs instead)
        input_files(src, "table")
    table_spec = _spec(spec, label, categorical, numeric, sequence, separator, group_key, delimiter, split, seed)
    output = ImportOutput(out, WriteOptions(row_group_size, rows_per_file, overwrite, progress_every_s))
    sources = _sources(src, table_spec)
    assign = _Assign(table_spec, sources, progress_every_s)
    statistics = TableStatistics(table_spec, seed=table_spec.split.seed)
    for source in sources:
        progress = Progress(f"{source.path} (statistics)", progress_every_s)
        for line, row, batch in source.batches():
            statistics.add(batch, assign(source, row, batch, line) == 0, source.path, line)
            progress.add(batch.num_rows)
        progress.close()
    transform = statistics.fit()
    with output:
        arrow_schema = transform.arrow_schema()
        writers = {i: output.parts(name, arrow_schema) for i, name in enumerate(SPLIT_NAMES) if i in assign.splits}
        for source in sources:
            progress = Progress(f"{source.path} (writing)", progress_every_s)
            for line, row, batch in source.batches():
                table = transform.encode(batch, source.path, line)
                which = assign(source, row, batch, line)
                if not np.isin(which, list(writers)).all():
                    raise RuntimeError(f"table import: rows assigned to a split without a writer ({set(which.tolist())})")
                for i, writer in writers.items():
                    writer.write(table.filter(pa.array(which == i)))
                progress.add(batch.num_rows)
            progress.close()
        for rel, vocabulary in transform.vocabulary_tables().items():
            output.write_file(rel, vocabulary)
        output.write_text(TRANSFORM_FILE, transform.transform_yaml())
        return output.finish(transform.feature_schema())


def _spec(path, label, categorical, numeric, sequence, separator, group_key, delimiter, split, seed) -> TableSpec:
    options = {"label": label, "categorical": categorical, "numeric": numeric, "sequence": sequence,
               "group_key": group_key, "delimiter": delimiter}
    defaults = {"separator": (separator, "^"), "split": (tuple(split), (0.8, 0.1, 0.1)), "seed": (seed, 0)}
    if path is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
        given += [f"--{k}" for k, (value, default) in defaults.items() if value != default]
        if given:
            raise ConfigError(f"table import: {', '.join(given)} and --spec exclude each other; put the columns "
                              "in the spec")
        return load_spec(path)
    if label is None or (categorical is None and sequence is None):
        raise ConfigError("table import: give --spec SPEC.yaml, or at least --label and --categorical "
                          "(comma-separated column names)")
    columns: dict = {}
    for names, kind in ((categorical, {"type": "categorical"}),
                        (numeric, {"type": "numeric", "normalize": "standard", "fill": "mean"}),
                        (sequence, {"type": "sequence", "separator": separator}),
                        (label, {"type": "label"})):
        for name in _names(names):
            columns[name] = dict(kind)
    raw = {"columns": columns, "split": {"by": "random", "fractions": list(split), "seed": seed}}
    if group_key:
        raw["group_key"] = group_key
    if delimiter:
        raw["delimiter"] = delimiter
    return parse_spec(raw, source="<command-line options>")


def _names(value) -> list[str]:
    if value is None:
        return []
    return [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if str(n).strip()]


# --- sources ------------------------------------------------------------------------------------


@dataclass
class _Source:
    """One input file: yields (line or row number of its first row, global row, raw batch)."""

    path: str
    spec: TableSpec
    split: int | None = None  # by files: the split every row goes to
    first_row: int = 0  # a number no other file's rows have: file index << 40

    def batches(self) -> Iterator[tuple[int, int, pa.RecordBatch]]:
        parquet = self.path.endswith((".parquet", ".pq"))
        rows = 0
        for line, batch in (self._parquet() if parquet else self._text()):
            yield line, self.first_row + rows, batch
            rows += batch.num_rows

    def _types(self) -> dict[str, pa.DataType]:
        numbers = {c.name for c in self.spec.columns if c.type in ("numeric", "label")}
        return {n: pa.float64() if n in numbers else pa.string() for n in self.spec.source_columns}

    def _text(self) -> Iterator[tuple[int, pa.RecordBatch]]:
        delimiter = self.spec.delimiter or ("\t" if self.path.removesuffix(".gz").endswith(".tsv") else None)
        layout = detect_layout(self.path, delimiter, header=False)
        first = list(layout.rows[0])
        if self.spec.column_names:
            names, header_lines = list(self.spec.column_names), int(first == list(self.spec.column_names))
        else:
            names, header_lines = first, 1
        missing = [c for c in self.spec.source_columns if c not in names]
        if missing:
            raise DataError(self._missing_message(missing, names, layout.delimiter))
        if len(set(names)) != len(names):
            raise DataError(f"{self.path} line 1: column names repeat: {names}")
        line = header_lines + 1
        for batch in csv_batches(self.path, names, self._types(), delimiter=layout.delimiter,
                                 header_lines=header_lines):
            yield line, batch
            line += batch.num_rows

    def _missing_message(self, missing: list[str], names: list[str], delimiter: str) -> str:
        where = "the spec's column_names" if self.spec.column_names else "line 1 (the header)"
        hint = ""
        if len(names) == 1:
            detected = detect_layout(self.path).delimiter
            hint = (f"; line 1 has a single {delimiter_name(delimiter)}-separated field: is the delimiter "
                    f"{detected!r}? (delimiter: in the spec)" if detected != delimiter else
                    "; the file has one column: a session file (one sequence per line) is read by "
                    "`distrec data import sessions`")
        elif (why := looks_like_event_log(detect_layout(self.path))) is not None:
            hint = (f"; it looks like an interaction log ({why}), read by: "
                    f"{interactions_command(detect_layout(self.path))}")
        elif not self.spec.column_names:
            hint = "; a file without a header needs column_names: [...] in the spec"
        return (f"{self.path}: no column(s) {missing} in {where}: {names[:20]}{hint}. "
                f"`distrec data import table` reads a table with a column per feature (the spec: {self.spec.source})")

    def _parquet(self) -> Iterator[tuple[int, pa.RecordBatch]]:
        import pyarrow.parquet as pq

        fs, fs_path = filesystem(self.path)
        with fs.open(fs_path, "rb") as fh:
            pf = pq.ParquetFile(fh)
            names = pf.schema_arrow.names
            missing = [c for c in self.spec.source_columns if c not in names]
            if missing:
                raise DataError(f"{self.path}: no column(s) {missing}; its columns: {names}")
            types = self._types()
            row = 1
            for batch in pf.iter_batches(columns=self.spec.source_columns, batch_size=65536):
                try:
                    arrays = [batch.column(n).cast(types[n]) for n in self.spec.source_columns]
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise DataError(f"{self.path}: rows {row}..{row + batch.num_rows - 1}: {exc}") from None
                yield row, pa.RecordBatch.from_arrays(arrays, names=self.spec.source_columns)
                row += batch.num_rows


def _sources(src: str, spec: TableSpec) -> list[_Source]:
    if spec.split.by == "files":
        return [_Source(path, spec, SPLIT_NAMES.index(name))
                for name, pattern in spec.split.files.items() for path in input_files(pattern, f"{name} files")]
    return [_Source(path, spec, first_row=i << 40) for i, path in enumerate(input_files(src, "table"))]


# --- splits -------------------------------------------------------------------------------------


class _Assign:
    """Split index (0 train, 1 valid, 2 test) of each row of a batch, the same on every pass."""

    def __init__(self, spec: TableSpec, sources: list[_Source], progress_every_s: float) -> None:
        self.split = spec.split
        f = self.split.fractions
        self.bounds = np.cumsum(f)[:-1]
        self.splits = {0} | {i for i in (1, 2) if f[i] > 0}
        if self.split.by == "files":
            self.splits = {s.split for s in sources}
        elif self.split.by == "time":
            self.cutoffs = self._time_cutoffs(spec, sources, progress_every_s)
            if self.split.valid_from is not None:
                self.splits = {0, 1, 2}

    def __call__(self, source: _Source, first_row: int, batch: pa.RecordBatch, line: int) -> np.ndarray:
        by = self.split.by
        if by == "files":
            return np.full(batch.num_rows, source.split, dtype=np.int8)
        if by == "time":
            t = time_values(batch.column(self.split.column), source.path, self.split.column, line)
            return np.searchsorted(self.cutoffs, t, side="right").astype(np.int8)
        if by == "hash":
            keys = stable_group_ids(batch.column(self.split.key)).view(np.uint64)
        else:
            keys = np.arange(first_row, first_row + batch.num_rows, dtype=np.uint64)
        return np.searchsorted(self.bounds, uniform_hash(keys, self.split.seed), side="right").astype(np.int8)

    def _time_cutoffs(self, spec: TableSpec, sources: list[_Source], progress_every_s: float) -> np.ndarray:
        split = self.split
        if split.valid_from is not None:
            cutoffs = np.array([time_values(pa.array([str(value)]), spec.source, key, 1)[0]
                                for key, value in (("split.valid_from", split.valid_from),
                                                   ("split.test_from", split.test_from))])
            if cutoffs[0] > cutoffs[1]:
                raise ConfigError(f"table spec {spec.source}: split.valid_from must not be after split.test_from")
            return cutoffs
        sample = Sample(SAMPLE_SIZE * 10, split.seed)
        for source in sources:
            progress = Progress(f"{source.path} (times for the split)", progress_every_s)
            for line, _, batch in source.batches():
                sample.add(time_values(batch.column(split.column), source.path, split.column, line))
                progress.add(batch.num_rows)
            progress.close()
        f = split.fractions
        cutoffs = np.quantile(sample.values, [f[0], f[0] + f[1]]) if len(sample.values) else np.zeros(2)
        if f[2] == 0:
            cutoffs[1] = np.inf  # the latest rows too belong to valid (or train) then
        if f[1] == 0 and f[2] == 0:
            cutoffs[0] = np.inf
        return cutoffs
