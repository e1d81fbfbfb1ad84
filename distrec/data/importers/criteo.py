"""Criteo display-ads logs (Kaggle ``train.txt``, Terabyte ``day_*``) -> distrec Parquet.

Input: tab-separated without a header (the released files: label, 13 integer columns, 26
hex-string categorical columns; empty = missing) or comma-separated with a ``label,I1..I13,
C1..C26`` header (the common samples). The delimiter and the header are detected per file from
its first line. Files are streamed block by block.

Output: ``train/ valid/ [test/]part-*.parquet`` with ``i1..i13`` float32 = log1p(max(x, 0))
(missing -> 0), ``c1..c26`` int64 = 1 + stable_hash(token) % (hash_size - 1) (missing -> 0),
``click`` float32; ``schema.yaml`` (c* fields ``hash: true``; no group_key: Criteo has no user id).

Splits: ``split="hash"`` sends each row by a hash of its global row number (deterministic, no
extra pass); ``split="last"`` keeps time order and takes the last rows (one extra pass that
counts lines, unless ``limit_rows`` is set).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from distrec.data.importers.common import (
    DEFAULT_ROW_GROUP_SIZE,
    DEFAULT_ROWS_PER_FILE,
    Hasher,
    ImportOutput,
    Progress,
    WriteOptions,
    count_lines,
    csv_batches,
    first_line,
    input_files,
    numbers,
    require_columns,
    uniform_hash,
)
from distrec.data.schema import FeatureSchema, SparseField
from distrec.errors import ConfigError, DataError

DENSE = [f"I{i}" for i in range(1, 14)]
SPARSE = [f"C{i}" for i in range(1, 27)]
COLUMNS = ["label", *DENSE, *SPARSE]


def import_criteo(
    src: str,
    out: str,
    *,
    hash_size: int = 1_000_000,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.0,
    split: str = "hash",
    limit_rows: int | None = None,
    seed: int = 0,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    overwrite: bool = False,
    progress_every_s: float = 10.0,
) -> FeatureSchema:
    """Import Criteo logs from ``src``: one file, a glob, or a directory (files in natural order:
    day_2 before day_10). ``seed`` varies the hash split only."""
    opts = WriteOptions(row_group_size, rows_per_file, overwrite, progress_every_s)
    fractions = {"valid": valid_fraction, "test": test_fraction}
    if split not in ("hash", "last") or min(fractions.values()) < 0 or sum(fractions.values()) >= 1:
        raise ConfigError(
            f"criteo import: need split 'hash' or 'last' and valid_fraction + test_fraction in "
            f"[0, 1), got split={split!r}, {fractions}"
        )
    output = ImportOutput(out, opts)
    hasher = Hasher(hash_size)
    files = input_files(src, "Criteo input")
    layouts = {path: _layout(path) for path in files}
    if split == "last":
        total = 0
        for p in files:
            if limit_rows is None or total < limit_rows:
                stop = None if limit_rows is None else limit_rows - total + layouts[p][2]
                total += count_lines(p, stop) - layouts[p][2]
        assign = _LastRows(total if limit_rows is None else min(total, limit_rows), fractions)
    else:
        assign = _HashRows(seed, fractions)

    arrow_schema = pa.schema(
        [(c.lower(), pa.float32()) for c in DENSE]
        + [(c.lower(), pa.int64()) for c in SPARSE]
        + [("click", pa.float32())]
    )
    schema = FeatureSchema(
        sparse=tuple(SparseField(c.lower(), hash_size, hash=True) for c in SPARSE),
        dense=tuple(c.lower() for c in DENSE),
        labels=("click",),
        binary_labels=("click",),
    )
    types = {"label": pa.float32()} | {c: pa.float64() for c in DENSE} | {c: pa.string() for c in SPARSE}
    with output:
        names = ["train"] + [s for s, f in fractions.items() if f > 0]
        writers = {i: output.parts(name, arrow_schema) for i, name in enumerate(names)}
        row = 0
        for path in files:
            delimiter, header, header_lines = layouts[path]
            progress = Progress(path, progress_every_s)
            line = header_lines + 1
            for batch in csv_batches(path, header, types, delimiter=delimiter,
                                     header_lines=header_lines, quoting=delimiter == ","):
                if limit_rows is not None and row + batch.num_rows > limit_rows:
                    batch = batch.slice(0, limit_rows - row)
                table = _convert(batch, path, line, hasher, arrow_schema)
                which = assign(np.arange(row, row + batch.num_rows, dtype=np.int64))
                for i, writer in writers.items():
                    writer.write(table.filter(pa.array(which == i)))
                row += batch.num_rows
                line += batch.num_rows
                progress.add(batch.num_rows)
                if limit_rows is not None and row >= limit_rows:
                    break
            progress.close()
            if limit_rows is not None and row >= limit_rows:
                break
        return output.finish(schema)


def _convert(batch: pa.RecordBatch, path: str, line: int, hasher: Hasher, schema: pa.Schema):
    cols = {}
    for c in DENSE:
        x = numbers(batch, c, path, line, fill=0.0, dtype=np.float64)
        cols[c.lower()] = np.log1p(np.maximum(x, 0.0)).astype(np.float32)
    for c in SPARSE:
        cols[c.lower()] = hasher.encode(batch.column(c))
    cols["click"] = numbers(batch, "label", path, line)
    return pa.table(cols, schema=schema)


def _layout(path: str) -> tuple[str, list[str], int]:
    """(delimiter, column names, header lines) from the first line."""
    line = first_line(path)
    delimiter = "\t" if "\t" in line else ","
    fields = [f.strip().strip('"') for f in line.split(delimiter)]
    try:
        float(fields[0])  # a data row starts with its 0/1 label
    except ValueError:
        require_columns(path, fields, COLUMNS)
        return delimiter, fields, 1
    if len(fields) != len(COLUMNS):
        hint = " (the unlabeled Criteo test file has 39)" if len(fields) == len(COLUMNS) - 1 else ""
        raise DataError(
            f"{path}: first line has {len(fields)} {delimiter!r}-separated fields; expected "
            f"{len(COLUMNS)}: label, I1..I13, C1..C26{hint}"
        )
    return delimiter, COLUMNS, 0


class _HashRows:
    """Split index (0 train, 1 valid, 2 test) from a SplitMix64 hash of the global row number."""

    def __init__(self, seed: int, fractions: dict[str, float]) -> None:
        self.seed = seed
        self.bounds = np.cumsum([1.0 - sum(fractions.values()), *fractions.values()])[:-1]
        self.skip = [f == 0 for f in fractions.values()]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        uniform = uniform_hash(rows, self.seed)
        return _dense_index(np.searchsorted(self.bounds, uniform, side="right"), self.skip)


class _LastRows:
    """Split index by position: the first rows train, then valid, then test (time order)."""

    def __init__(self, total: int, fractions: dict[str, float]) -> None:
        sizes = [round(total * f) for f in fractions.values()]
        self.bounds = np.cumsum([total - sum(sizes), *sizes])[:-1]
        self.skip = [f == 0 for f in fractions.values()]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return _dense_index(np.searchsorted(self.bounds, rows, side="right"), self.skip)


def _dense_index(split: np.ndarray, skip: list[bool]) -> np.ndarray:
    """Renumber (train, valid, test) -> writer index when valid (fraction 0) has no writer."""
    if skip[0] and not skip[1]:
        return np.where(split == 2, 1, split)
    return split
