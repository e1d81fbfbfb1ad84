"""What every importer shares: streaming CSV reads with actionable errors, id encoders
(vocabulary or hash), progress lines, and an output directory written part by part, atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob as globlib
import re
import sys
import time
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import yaml
from fsspec.implementations.local import LocalFileSystem

from distrec.data.schema import FeatureSchema, SparseField
from distrec.errors import ConfigError, DataError
from distrec.storage import (
    atomic_parquet_writer,
    filesystem,
    full_url,
    write_text_atomic,
)

DEFAULT_ROW_GROUP_SIZE = 65536
DEFAULT_ROWS_PER_FILE = 1 << 20
CSV_BLOCK_BYTES = 8 << 20  # one streamed block: bounds memory, large enough for throughput


# --- input files -------------------------------------------------------------------------------


def require_file(path: str, what: str = "input file") -> None:
    fs, fs_path = filesystem(path)
    if not fs.isfile(fs_path):
        raise DataError(f"{what} not found: {path}")


def first_line(path: str) -> str:
    """The first line of a (possibly compressed, possibly remote) text file, without the newline."""
    require_file(path)
    fs, fs_path = filesystem(path)
    with fs.open(fs_path, "rb", compression="infer") as fh:
        line = fh.readline()
    if not line.strip():
        raise DataError(f"{path}: file is empty; expected a header or data line")
    return line.decode("utf-8", errors="replace").rstrip("\r\n")


def text_blocks(path: str, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(number of its first line, bytes) of consecutive blocks of whole lines of a (possibly
    compressed, possibly remote) text file, about ``block_bytes`` each; a block's last newline is
    left out, a block never ends inside a line."""
    require_file(path)
    fs, fs_path = filesystem(path)
    line_no, rest = 1, b""
    with fs.open(fs_path, "rb", compression="infer") as fh:
        while chunk := fh.read(block_bytes):
            block, newline, rest = (rest + chunk).rpartition(b"\n")
            if newline:  # else no line ends in the chunk yet: read on
                yield line_no, block
                line_no += block.count(b"\n") + 1
    if rest:
        yield line_no, rest


def count_lines(path: str, stop_after: int | None = None) -> int:
    """Number of lines (a last one without a newline included), read in 16 MiB chunks; may stop
    counting early once ``stop_after`` is reached (the result is then >= stop_after)."""
    fs, fs_path = filesystem(path)
    count, last = 0, b"\n"
    with fs.open(fs_path, "rb", compression="infer") as fh:
        while chunk := fh.read(16 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
            if stop_after is not None and count >= stop_after:
                return count
    return count + (last != b"\n")


def glob_files(pattern: str) -> list[str]:
    fs, fs_path = filesystem(pattern)
    return [full_url(fs, p) for p in sorted(fs.glob(fs_path)) if fs.isfile(p)]


def input_files(src: str, what: str = "input") -> list[str]:
    """The files ``src`` names: one file, a glob, or a directory (its files, hidden ones and
    ``_SUCCESS``-style markers left out), in natural order (day_2 before day_10)."""
    fs, path = filesystem(src)
    if globlib.has_magic(path):
        files = glob_files(src)
    elif fs.isdir(path):
        files = [full_url(fs, p) for p in fs.ls(path, detail=False)
                 if fs.isfile(p) and not p.rsplit("/", 1)[-1].startswith((".", "_"))]
    elif fs.isfile(path):
        files = [src]
    else:
        files = []
    if not files:
        raise DataError(f"{what} not found: {src} (expected a file, a glob or a directory)")
    return sorted(files, key=_natural_key)


def _natural_key(path: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]


def csv_source(path: str):
    fs, fs_path = filesystem(path)
    if isinstance(fs, LocalFileSystem):
        return fs_path  # pyarrow's native reader; detects .gz/.bz2/.zst by extension itself
    return fs.open(fs_path, "rb", compression="infer")


def csv_batches(
    path: str,
    names: list[str],
    types: dict[str, pa.DataType],
    *,
    delimiter: str = ",",
    header_lines: int = 0,
    quoting: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Stream the columns named in ``types`` from a delimited file, one block at a time.

    ``names`` are the file's columns in order (the header, when it has one, is skipped with
    ``header_lines``). Empty fields are null. Errors become a DataError naming the file, the
    column and, for a bad value, its line number.
    """
    require_file(path)
    read = pacsv.ReadOptions(column_names=names, skip_rows=header_lines, block_size=CSV_BLOCK_BYTES)
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoting else False)
    convert = pacsv.ConvertOptions(
        column_types=types,
        include_columns=list(types),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    try:
        reader = pacsv.open_csv(csv_source(path), read_options=read, parse_options=parse,
                                convert_options=convert)
        yield from reader
    except pa.ArrowInvalid as exc:
        raise _explain_csv_error(exc, path, names, types, delimiter, header_lines, quoting) from None


def _explain_csv_error(exc, path, names, types, delimiter, header_lines, quoting) -> DataError:
    msg = str(exc)
    ragged = re.search(r"Expected (\d+) columns, got (\d+)", msg)
    if ragged:
        expected, got = int(ragged.group(1)), int(ragged.group(2))
        line = _first_ragged_line(path, expected, delimiter)
        return DataError(f"{path}{f' line {line}' if line else ''}: {got} {delimiter!r}-separated fields, expected "
                         f"{expected} as in the first line ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
    bad = re.match(r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", msg)
    if not bad:
        return DataError(f"{path}: cannot parse as {delimiter!r}-delimited text: {msg}")
    column, kind, value = names[int(bad.group(1))], bad.group(2), bad.group(3)
    line = _find_line(path, names, column, value, delimiter, header_lines, quoting)
    where = f" on line {line}" if line else ""
    return DataError(
        f"{path}: column '{column}'{where} has value {value!r}; expected a number ({kind})"
    )


def _first_ragged_line(path: str, fields: int, delimiter: str) -> int | None:
    """1-based number of the first line without ``fields`` fields (a second, error-only pass)."""
    import csv

    for first_line_no, block in text_blocks(path, CSV_BLOCK_BYTES):
        lines = block.decode("utf-8", errors="replace").split("\n")
        for i, row in enumerate(csv.reader(lines, delimiter=delimiter)):
            if row and len(row) != fields:
                return first_line_no + i
    return None


def _find_line(path, names, column, value, delimiter, header_lines, quoting) -> int | None:
    """1-based line of the first row whose ``column`` equals ``value`` (a second, error-only pass)."""
    seen = header_lines
    for batch in csv_batches(path, names, {column: pa.string()}, delimiter=delimiter,
                             header_lines=header_lines, quoting=quoting):
        hits = np.flatnonzero(pc.fill_null(pc.equal(batch.column(0), value), False))
        if len(hits):
            return seen + int(hits[0]) + 1
        seen += batch.num_rows
    return None


def require_columns(path: str, header: list[str], required: Iterable[str]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{path}: header is missing required column(s) {missing}; the header has {header}"
        )


def numbers(batch: pa.RecordBatch, column: str, path: str, first_line_no: int, *,
            fill: float | None = None, dtype=np.float32) -> np.ndarray:
    """A numeric column as ``dtype``; nulls become ``fill``, or a DataError naming the line."""
    arr = batch.column(column)
    if arr.null_count:
        if fill is None:
            line = first_line_no + int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{path}: column '{column}' is empty on line {line}; expected a number")
        arr = arr.fill_null(fill)
    return arr.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def time_values(arr: pa.Array, path: str, column: str, first_line_no: int) -> np.ndarray:
    """A time column as float64 for ordering: numbers as they are (epoch seconds, frames, ...),
    ISO dates/times (``2014-04-07T10:51:09.277Z``, ``2016-05-09``) as epoch seconds; empty or
    unreadable values are a DataError naming the line."""
    scale = 1.0
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        values, scale = pc.cast(pc.cast(arr, pa.timestamp("ns")), pa.int64()), 1e-9
    elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        values = arr
    else:
        text = pc.utf8_trim_whitespace(arr.cast(pa.string()))
        try:
            values = pc.cast(text, pa.float64())
        except pa.ArrowInvalid:
            try:
                stamps = pc.cast(pc.replace_substring_regex(text, r"Z$", ""), pa.timestamp("ns"))
            except pa.ArrowInvalid:
                bad = _first_unreadable_time(text)
                raise DataError(f"{path}: column '{column}' on line {first_line_no + bad} has "
                                f"{text[bad].as_py()!r}; expected a number or an ISO date/time "
                                "(2014-04-07T10:51:09Z)") from None
            values, scale = pc.cast(stamps, pa.int64()), 1e-9
    if values.null_count:
        line = first_line_no + int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: column '{column}' is empty on line {line}; expected a time")
    return values.to_numpy(zero_copy_only=False).astype(np.float64) * scale


def _first_unreadable_time(text: pa.Array) -> int:
    for i, value in enumerate(text.to_pylist()):
        if value is None:
            continue
        try:
            pc.cast(pa.array([value.removesuffix("Z")]), pa.timestamp("ns"))
        except pa.ArrowInvalid:
            try:
                float(value)
            except ValueError:
                return i
    return 0


def uniform_hash(keys: np.ndarray, seed: int) -> np.ndarray:
    """A uniform float in [0, 1) per integer key: SplitMix64 of key + seed, the same on every run
    and machine (row numbers or hashed keys -> a seeded split without a pass over the data)."""
    z = keys.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % (1 << 64))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# --- id encoders: 0 = missing/unknown, real values >= 1 ------------------------------------------


def map_dictionary(values: pa.Array | pa.ChunkedArray, map_dict) -> np.ndarray:
    """Apply ``map_dict`` (dictionary values -> int64 ids) once per distinct value; nulls -> 0."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    encoded = pc.dictionary_encode(values)
    ids = np.append(map_dict(encoded.dictionary), np.int64(0))
    idx = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False)
    return ids[idx]


class Vocab:
    """Distinct raw tokens -> ids 1..n in order of first appearance; 0 is missing/unknown."""

    hash = False

    def __init__(self) -> None:
        self._ids: dict = {}

    def add(self, values: pa.Array | pa.ChunkedArray) -> None:
        ids = self._ids
        for v in pc.unique(values).drop_null().to_pylist():
            if v not in ids:
                ids[v] = len(ids) + 1

    def encode(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        get = self._ids.get
        return map_dictionary(
            values, lambda d: np.fromiter((get(v, 0) for v in d.to_pylist()), np.int64, len(d))
        )

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def num_embeddings(self) -> int:
        return len(self._ids) + 1

    def tokens(self) -> list:
        """Raw tokens in id order (the token of id k is at index k - 1)."""
        return list(self._ids)


class Hasher:
    """Raw tokens -> 1 + stable_hash(token) % (size - 1); 0 is missing. Stable across runs and
    machines (pandas' fixed-key SipHash), so separately imported files agree."""

    hash = True

    def __init__(self, size: int) -> None:
        if size < 2:
            raise ConfigError(f"hash size must be at least 2 (id 0 is reserved), got {size}")
        self.num_embeddings = int(size)

    def add(self, values) -> None:  # same interface as Vocab: nothing to learn
        pass

    def encode(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        def hash_dictionary(d: pa.Array) -> np.ndarray:
            raw = d.cast(pa.string()).to_numpy(zero_copy_only=False).astype(object, copy=False)
            h = pd.util.hash_array(raw, categorize=False)
            return (h % np.uint64(self.num_embeddings - 1)).astype(np.int64) + 1

        return map_dictionary(values, hash_dictionary)


def sparse_field_for(name: str, encoder: Vocab | Hasher, **kwargs) -> SparseField:
    return SparseField(name=name, num_embeddings=encoder.num_embeddings, hash=encoder.hash, **kwargs)


# --- progress ----------------------------------------------------------------------------------


class Progress:
    """Prints ``rows, rows/s`` to stderr at most every ``every_s`` seconds, so only big inputs
    (those that take longer than that) print anything."""

    def __init__(self, what: str, every_s: float = 10.0) -> None:
        self.what, self.every_s = what, every_s
        self.rows = 0
        self._start = self._last = time.monotonic()
        self._printed = False

    def add(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._print(now)

    def close(self) -> None:
        if self._printed:
            self._print(time.monotonic(), done=True)

    def _print(self, now: float, done: bool = False) -> None:
        rate = self.rows / max(now - self._start, 1e-9)
        tail = " (done)" if done else ""
        print(f"[distrec import] {self.what}: {self.rows:,} rows, {rate:,.0f} rows/s{tail}",
              file=sys.stderr, flush=True)
        self._printed = True


# --- output ------------------------------------------------------------------------------------


@dataclasses.dataclass
class WriteOptions:
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE
    rows_per_file: int = DEFAULT_ROWS_PER_FILE
    overwrite: bool = False
    progress_every_s: float = 10.0

    def __post_init__(self) -> None:
        if self.row_group_size <= 0 or self.rows_per_file <= 0:
            raise ConfigError(
                f"row_group_size and rows_per_file must be positive, got "
                f"{self.row_group_size} and {self.rows_per_file}"
            )


class PartWriter:
    """Writes ``<dir>/part-00000.parquet``, ``part-00001`` ... in row groups of a fixed size; each
    part appears (atomically) only when complete."""

    def __init__(self, output: ImportOutput, subdir: str, arrow_schema: pa.Schema) -> None:
        self._output, self._subdir, self.schema = output, subdir, arrow_schema
        self._opts = output.options
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._file: contextlib.ExitStack | None = None
        self._writer = None
        self._file_rows = 0
        self._parts = 0
        self._closed = False
        self.rows = 0

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        table = table.select(self.schema.names).cast(self.schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        while self._pending_rows >= self._opts.row_group_size:
            self._flush(self._opts.row_group_size)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self._parts == 0 and self._file is None:
            self._open()  # an empty split still gets one (empty) part with the right columns
        self._close_file()

    def abort(self) -> None:
        """Discard the part being written (its temp file), keeping finished parts for cleanup."""
        if self._file is not None:
            stack, self._file = self._file, None
            with contextlib.suppress(Exception):
                stack.__exit__(DataError, DataError("import aborted"), None)

    def _flush(self, n: int) -> None:
        table = pa.concat_tables(self._pending)
        group, rest = table.slice(0, n), table.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        if self._file is None:
            self._open()
        self._writer.write_table(group, row_group_size=n)
        self._file_rows += n
        if self._file_rows >= self._opts.rows_per_file:
            self._close_file()

    def _open(self) -> None:
        path = self._output.path(f"{self._subdir}/part-{self._parts:05d}.parquet")
        self._file = contextlib.ExitStack()
        self._writer = self._file.enter_context(
            atomic_parquet_writer(path, self.schema, self._output.fs)
        )
        self._current = path
        self._file_rows = 0

    def _close_file(self) -> None:
        if self._file is None:
            return
        stack, self._file = self._file, None
        stack.close()  # renames the temp file into place
        self._output.committed.append(self._current)
        self._parts += 1


class ImportOutput:
    """An importer's output directory.

    Create it first: it refuses a directory that holds an earlier import unless ``overwrite``.
    Then use it as a context manager: entering removes the earlier import (schema.yaml first);
    on error every file this import committed is removed again (the part in flight was never
    renamed into place), so a failed import leaves no part file behind. ``finish`` closes the
    writers and writes ``schema.yaml`` last: its presence marks a complete import."""

    SPLITS = ("train", "valid", "test", "sequences")
    FILES = ("items.parquet", "users.parquet", "transform.yaml")
    GLOBS = ("vocabularies/*.parquet",)

    def __init__(self, out: str, options: WriteOptions) -> None:
        self.out = out.rstrip("/")
        self.options = options
        self.fs, self._root = filesystem(self.out)
        self.committed: list[str] = []
        self._writers: list[PartWriter] = []
        existing = self._existing()  # checked here, before an importer spends time reading
        if existing and not options.overwrite:
            raise DataError(
                f"output {self.out} already holds an import ({len(existing)} file(s), e.g. "
                f"{existing[0]}); choose an empty directory or pass overwrite=True"
            )

    def path(self, rel: str) -> str:
        return f"{self._root}/{rel}"

    def __enter__(self) -> ImportOutput:
        schema_yaml = self.path("schema.yaml")
        existing = self._existing()
        for p in sorted(existing, key=lambda p: p != schema_yaml):  # schema first: marks it stale
            self.fs.rm(p)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            return
        for w in self._writers:
            w.abort()
        for p in self.committed:
            with contextlib.suppress(Exception):
                self.fs.rm(p)

    def _existing(self) -> list[str]:
        found = [self.path(f) for f in ("schema.yaml",) + self.FILES if self.fs.isfile(self.path(f))]
        for split in self.SPLITS:
            found += sorted(self.fs.glob(self.path(f"{split}/part-*.parquet")))
        for pattern in self.GLOBS:
            found += sorted(self.fs.glob(self.path(pattern)))
        return found

    def parts(self, subdir: str, arrow_schema: pa.Schema) -> PartWriter:
        writer = PartWriter(self, subdir, arrow_schema)
        self._writers.append(writer)
        return writer

    def write_file(self, rel: str, table: pa.Table) -> None:
        path = self.path(rel)
        with atomic_parquet_writer(path, table.schema, self.fs) as writer:
            writer.write_table(table, row_group_size=self.options.row_group_size)
        self.committed.append(path)

    def write_text(self, rel: str, text: str) -> None:
        path = self.path(rel)
        write_text_atomic(path, text, self.fs)
        self.committed.append(path)

    def finish(self, schema: FeatureSchema) -> FeatureSchema:
        """Close every part writer, then publish ``schema.yaml``: its presence marks a whole import."""
        for w in self._writers:
            w.close()
        path = self.path("schema.yaml")
        write_text_atomic(path, yaml.safe_dump(schema.to_dict(), sort_keys=False), self.fs)
        self.committed.append(path)
        return dataclasses.replace(schema, source=f"{self.out}/schema.yaml")
