"""The per-rank streaming Parquet reader.

Work is split in Parquet row groups ("units"): every rank plans the same units from the file
footers, assigns them to ranks the same way (balanced by rows), then splits its share across
DataLoader workers (unit j -> worker j % num_workers). Each worker streams its row groups with
pyarrow and cuts them into fixed-size batches, so every row is read exactly once per epoch.

Memory per stream stays within a few decode chunks (each up to 4 batches or 64k rows): the
scanner's readahead and the chunk being cut into batches.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from distrec.config.schema import OnBadRows
from distrec.data.batch import RecBatch
from distrec.data.convert import (
    DecodedRows,
    arrow_schema,
    assemble,
    check_file_schema,
    decode_rows,
)
from distrec.data.schema import FeatureSchema
from distrec.data.validate import BadRows, SkippedRows, find_bad_rows
from distrec.errors import DataError
from distrec.storage import arrow_filesystem, is_s3, list_parquet_files, storage_error

_DECODE_BATCHES, _DECODE_ROWS = 4, 65536  # decode up to 4 batches (at most 64k rows) at a time
_READAHEAD_BATCHES, _READAHEAD_ROW_GROUPS = 2, 1  # scanner readahead: bounds memory
# Local files stream page by page; object stores fetch a row group's columns in a few big reads.
_FORMAT, _FORMAT_OBJECT_STORE = (
    ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=b))
    for b in (False, True)
)
_checked: set[tuple[str, FeatureSchema]] = set()  # (file, schema) pairs this process has checked


@dataclass(frozen=True)
class RowGroupUnit:
    file: str
    row_group: int
    num_rows: int


@dataclass(frozen=True)
class ChunkOrigin:
    """Where a decoded chunk's rows come from: rows ``offset:`` of ``units`` (one file's row
    groups, read as one fragment), so a bad row can be named by row group and row."""

    file: str
    units: tuple[RowGroupUnit, ...]
    offset: int

    def shifted(self, rows: int) -> ChunkOrigin:
        return ChunkOrigin(self.file, self.units, self.offset + rows)

    def locate(self, row: int) -> str:
        pos = self.offset + row
        for u in self.units:
            if pos < u.num_rows:
                return f"{self.file}, row group {u.row_group}, row {pos}"
            pos -= u.num_rows
        return f"{self.file}, row {self.offset + row} of row groups {[u.row_group for u in self.units]}"


# --- planning ----------------------------------------------------------------------------------


def _open_parquet(file: str, s3_endpoint_url: str | None) -> pq.ParquetFile:
    fs, path = arrow_filesystem(file, s3_endpoint_url)
    try:
        handle = fs.open_input_file(path)
    except FileNotFoundError:
        raise DataError(f"Parquet file not found: {file}") from None
    except OSError as exc:
        raise storage_error(file, exc, s3_endpoint_url) from None
    try:
        return pq.ParquetFile(handle, pre_buffer=is_s3(file))
    except (pa.ArrowInvalid, OSError) as exc:
        handle.close()
        raise DataError(
            f"{file} is not a readable Parquet file (corrupt or truncated footer?): {exc}"
        ) from None


def _file_units(file: str, s3_endpoint_url: str | None, schema: FeatureSchema | None) -> list[RowGroupUnit]:
    pf = _open_parquet(file, s3_endpoint_url)
    try:
        if schema is not None:
            check_file_schema(pf.schema_arrow, schema, file)
        md = pf.metadata
        return [
            RowGroupUnit(file, i, md.row_group(i).num_rows)
            for i in range(md.num_row_groups)
            if md.row_group(i).num_rows > 0
        ]
    finally:
        pf.close()


def plan_units(
    files: Sequence[str] | str,
    s3_endpoint_url: str | None = None,
    schema: FeatureSchema | None = None,
) -> list[RowGroupUnit]:
    """Row groups of ``files`` (a list, or a path/dir/glob), read from footers only.

    With ``schema``, every file's columns are checked against it here, before any training.
    """
    if isinstance(files, str):
        files = list_parquet_files(files, s3_endpoint_url)
    if not files:
        raise DataError("no Parquet files to read")
    # Footers are small reads dominated by latency on object stores: fetch several at once.
    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        per_file = list(pool.map(lambda f: _file_units(f, s3_endpoint_url, schema), files))
    if schema is not None:
        _checked.update((f, schema) for f in files)
    return [u for units in per_file for u in units]


def _assign_all(
    units: Sequence[RowGroupUnit], world_size: int, epoch: int, seed: int, shuffle: bool
) -> list[list[RowGroupUnit]]:
    order: Iterable[int] = range(len(units))
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(len(units)).tolist()
    per_rank: list[list[RowGroupUnit]] = [[] for _ in range(world_size)]
    heap = [(0, r) for r in range(world_size)]  # (rows so far, rank): ties go to the lowest rank
    for i in order:
        rows, r = heapq.heappop(heap)
        per_rank[r].append(units[i])
        heapq.heappush(heap, (rows + units[i].num_rows, r))
    return per_rank


def assign_units(
    units: Sequence[RowGroupUnit], rank: int, world_size: int, epoch: int, seed: int, shuffle: bool
) -> list[RowGroupUnit]:
    """This rank's units; rows per rank differ by at most one row group, every unit used once."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    return _assign_all(units, world_size, epoch, seed, shuffle)[rank]


def _batches_per_worker(units: Sequence[RowGroupUnit], batch_size: int, workers: int) -> list[int]:
    return [math.ceil(sum(u.num_rows for u in units[w::workers]) / batch_size) for w in range(workers)]


def steps_per_epoch(
    units: Sequence[RowGroupUnit],
    batch_size: int,
    world_size: int,
    epoch: int,
    seed: int,
    shuffle: bool,
    num_loader_workers: int,
) -> int:
    """The most batches any rank yields this epoch: the number of steps every rank must run."""
    workers = max(1, num_loader_workers)
    per_rank = _assign_all(units, world_size, epoch, seed, shuffle)
    return max(sum(_batches_per_worker(r, batch_size, workers)) for r in per_rank)


# --- resume ------------------------------------------------------------------------------------


def _round_robin_position(counts: Sequence[int], worker: int, j: int) -> int:
    """Where batch j of ``worker`` comes in DataLoader's order (workers in turn, exhausted skipped)."""
    return sum(min(c, j) for c in counts) + sum(1 for c in counts[:worker] if c > j)


def _resume_plan(counts: Sequence[int], start_batch: int) -> tuple[list[int], int]:
    """Batches each worker skips to drop the first ``start_batch``, and the worker that goes next."""
    skips = []
    for w, c in enumerate(counts):
        lo, hi = 0, c  # positions of a worker's batches increase with j: binary search
        while lo < hi:
            mid = (lo + hi) // 2
            if _round_robin_position(counts, w, mid) < start_batch:
                lo = mid + 1
            else:
                hi = mid
        skips.append(lo)
    first = 0
    for w, (c, s) in enumerate(zip(counts, skips)):
        if s < c and _round_robin_position(counts, w, s) == start_batch:
            first = w
    return skips, first


# --- the reader --------------------------------------------------------------------------------


class ParquetStreamReader(IterableDataset):
    """Yields RecBatch of exactly ``batch_size`` rows; each loader worker's last batch may be short.

    ``start_batch=k`` resumes after the first k batches this rank would have yielded (through
    ``make_loader``): the batches that follow are exactly the rest of that sequence.

    Every chunk read is checked (``validate.find_bad_rows``): a bad value is a DataError naming
    file, row group, row and column, or with ``on_bad_rows=skip`` its row is dropped and counted
    (a warning per file). Dropped rows shorten the epoch (``pad_to_steps`` fills the planned
    steps), and a resumed epoch, positioned by footer row counts, may repeat up to as many rows
    as were dropped before the resume point.
    """

    def __init__(
        self,
        schema: FeatureSchema,
        files_or_units: Sequence[str] | Sequence[RowGroupUnit] | str,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        epoch: int = 0,
        seed: int = 0,
        shuffle: bool = False,
        s3_endpoint_url: str | None = None,
        start_batch: int = 0,
        num_loader_workers: int = 0,
        on_bad_rows: OnBadRows | str = OnBadRows.error,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        items = list(files_or_units) if not isinstance(files_or_units, str) else files_or_units
        if isinstance(items, str) or (items and not isinstance(items[0], RowGroupUnit)):
            items = plan_units(items, s3_endpoint_url, schema)
        self.schema = schema
        self.batch_size = batch_size
        self.s3_endpoint_url = s3_endpoint_url
        self.num_loader_workers = num_loader_workers
        self.skip_bad_rows = OnBadRows(on_bad_rows) == OnBadRows.skip
        self.units = assign_units(items, rank, world_size, epoch, seed, shuffle)
        streams = max(1, num_loader_workers)
        self._stream_units = [self.units[w::streams] for w in range(streams)]
        self._counts = _batches_per_worker(self.units, batch_size, streams)
        self._skips, self._first = _resume_plan(self._counts, start_batch)

    def num_batches(self) -> int:
        """Batches this rank yields (after skipping ``start_batch``)."""
        return sum(c - s for c, s in zip(self._counts, self._skips))

    def num_rows(self) -> int:
        """Rows this rank yields (after skipping ``start_batch``)."""
        rows = [sum(u.num_rows for u in units) for units in self._stream_units]
        return sum(max(0, r - s * self.batch_size) for r, s in zip(rows, self._skips))

    def __len__(self) -> int:
        return self.num_batches()

    def __iter__(self) -> Iterator[RecBatch]:
        streams = len(self._stream_units)
        info = get_worker_info()
        if info is None:
            order = [(self._first + i) % streams for i in range(streams)]
            return _round_robin([self._stream(s) for s in order])
        if info.num_workers != streams:
            raise ValueError(
                f"reader planned for {self.num_loader_workers} loader workers but the DataLoader "
                f"has {info.num_workers}: use make_loader(reader)"
            )
        # DataLoader always starts with worker 0: rotate streams so a resumed epoch continues
        # with the stream that was next in line.
        return self._stream((info.id + self._first) % streams)

    def _stream(self, s: int) -> Iterator[RecBatch]:
        skip_rows = self._skips[s] * self.batch_size
        units = []
        for u in self._stream_units[s]:
            if skip_rows >= u.num_rows:
                skip_rows -= u.num_rows  # whole row group skipped from metadata, never decoded
                continue
            units.append(u)
        return self._batches(units, skip_rows)

    def _batches(self, units: list[RowGroupUnit], skip_rows: int) -> Iterator[RecBatch]:
        bs = self.batch_size
        pending: list[tuple[DecodedRows, int, int]] = []
        pending_rows = 0
        skipped, last_file = SkippedRows(), None
        try:
            for rb, origin in self._scan(units):
                first = min(skip_rows, rb.num_rows)  # a resumed stream's partly skipped row group
                skip_rows -= first
                if first == rb.num_rows:
                    continue
                if first:
                    rb, origin = rb.slice(first), origin.shifted(first)
                if origin.file != last_file:  # a file's skipped rows are logged once it is done
                    skipped.log_all()
                    last_file = origin.file
                rb = self._usable_rows(rb, origin, skipped)
                n, pos = rb.num_rows, 0
                if n == 0:
                    continue
                rows = decode_rows(rb, self.schema)
                if pending_rows:  # a batch straddling two chunks takes a range of each
                    take = min(bs - pending_rows, n - pos)
                    pending.append((rows, pos, pos + take))
                    pending_rows += take
                    pos += take
                    if pending_rows < bs:
                        continue
                    yield assemble(pending, self.schema)
                    pending, pending_rows = [], 0
                while n - pos >= bs:
                    yield assemble([(rows, pos, pos + bs)], self.schema)
                    pos += bs
                if pos < n:
                    pending, pending_rows = [(rows, pos, n)], n - pos
            if pending_rows:
                yield assemble(pending, self.schema)
        finally:
            skipped.log_all()

    def _usable_rows(self, rb: pa.RecordBatch, origin: ChunkOrigin, skipped: SkippedRows) -> pa.RecordBatch:
        """``rb`` if every row is usable; else, with on_bad_rows=skip, ``rb`` without its bad rows."""
        bad = find_bad_rows(rb, self.schema)
        if bad is None:
            return rb
        if not self.skip_bad_rows:
            raise DataError(_bad_rows_message(bad, origin, rb.num_rows))
        skipped.add(origin.file, bad.count, bad.describe(origin.locate(bad.first.row)))
        return rb.filter(pa.array(~bad.mask))

    def _scan(self, units: list[RowGroupUnit]) -> Iterator[tuple[pa.RecordBatch, ChunkOrigin]]:
        """Decoded chunks of ``units`` in order, with where each came from.

        pyarrow's dataset scanner decodes ahead in its own threads (no GIL), overlapping our
        conversion and, on object stores, the caller's training step. It fills columns a file
        lacks with nulls, so every file is checked against the schema first."""
        check_files({u.file for u in units}, self.schema, self.s3_endpoint_url)
        chunk_rows = self.batch_size * max(1, min(_DECODE_BATCHES, _DECODE_ROWS // self.batch_size))
        target = arrow_schema(self.schema)
        for fs, run in _runs_by_filesystem(units, self.s3_endpoint_url):
            fmt = _FORMAT_OBJECT_STORE if isinstance(fs, pafs.S3FileSystem) else _FORMAT
            runs = _fragment_runs(run)
            fragments = [fmt.make_fragment(path, fs, row_groups=[u.row_group for u in group])
                         for path, group in runs]
            scanner = ds.FileSystemDataset(fragments, target, fmt, fs).scanner(
                columns=self.schema.columns, batch_size=chunk_rows, use_threads=True,
                batch_readahead=_READAHEAD_BATCHES, fragment_readahead=_READAHEAD_ROW_GROUPS,
            )
            # batches come in fragment order, each fragment whole: its rows tell where it ends
            ends = [sum(u.num_rows for u in group) for _, group in runs]
            current, offset = 0, 0
            try:
                for tagged in scanner.scan_batches():
                    while current + 1 < len(runs) and offset >= ends[current]:
                        current, offset = current + 1, 0
                    group = runs[current][1]
                    yield tagged.record_batch, ChunkOrigin(group[0].file, tuple(group), offset)
                    offset += tagged.record_batch.num_rows
            except (pa.ArrowInvalid, OSError) as exc:
                candidates = [u for _, group in runs[current:] for u in group]
                raise DataError(self._unreadable(candidates, exc)) from None

    def _unreadable(self, candidates: list[RowGroupUnit], exc: Exception) -> str:
        """The scanner's error does not say which file failed: read the row groups it may have
        been reading, in order, until one fails, and name it."""
        for u in candidates:
            pf = _open_parquet(u.file, self.s3_endpoint_url)
            try:
                pf.read_row_group(u.row_group, columns=self.schema.columns)
            except (pa.ArrowInvalid, OSError) as own:
                return f"cannot read {u.file}, row group {u.row_group} (corrupt or truncated?): {own}"
            finally:
                pf.close()
        files = sorted({u.file for u in candidates})
        return f"cannot read one of {', '.join(files)}: {exc}"


def _fragment_runs(run: list[tuple[str, RowGroupUnit]]) -> list[tuple[str, list[RowGroupUnit]]]:
    """Consecutive units of one file with ascending row groups become one fragment: the file is
    opened and its footer read once for them (a request each on object stores), not per unit."""
    out: list[tuple[str, list[RowGroupUnit]]] = []
    for path, u in run:
        if out and out[-1][0] == path and u.row_group > out[-1][1][-1].row_group:
            out[-1][1].append(u)
        else:
            out.append((path, [u]))
    return out


def _runs_by_filesystem(
    units: list[RowGroupUnit], s3_endpoint_url: str | None
) -> Iterator[tuple[pafs.FileSystem, list[tuple[str, RowGroupUnit]]]]:
    """Consecutive units that one pyarrow filesystem reads (normally all of them)."""
    run: list[tuple[str, RowGroupUnit]] = []
    run_fs = None
    for u in units:
        fs, path = arrow_filesystem(u.file, s3_endpoint_url)
        if run and not fs.equals(run_fs):
            yield run_fs, run
            run = []
        run_fs = fs
        run.append((path, u))
    if run:
        yield run_fs, run


def _bad_rows_message(bad: BadRows, origin: ChunkOrigin, chunk_rows: int) -> str:
    return (f"{bad.describe(origin.locate(bad.first.row))}; {bad.count} of the {chunk_rows} rows read "
            f"with it are bad. Fix the data, or set data.on_bad_rows=skip to drop (and count) bad rows")


def check_files(files: Iterable[str], schema: FeatureSchema, s3_endpoint_url: str | None = None) -> None:
    """Check each file's footer schema against ``schema`` (once per process and file)."""
    todo = sorted(f for f in set(files) if (f, schema) not in _checked)
    if not todo:
        return

    def check(file: str) -> None:
        pf = _open_parquet(file, s3_endpoint_url)
        try:
            check_file_schema(pf.schema_arrow, schema, file)
        finally:
            pf.close()

    with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
        list(pool.map(check, todo))
    _checked.update((f, schema) for f in todo)


def _round_robin(streams: list[Iterator[RecBatch]]) -> Iterator[RecBatch]:
    """DataLoader's order: one batch from each stream in turn, dropping exhausted ones."""
    active = streams
    while active:
        still = []
        for stream in active:
            batch = next(stream, None)
            if batch is not None:
                yield batch
                still.append(stream)
        active = still


# --- loading and padding -----------------------------------------------------------------------


def make_loader(reader: ParquetStreamReader) -> Iterable[RecBatch]:
    if reader.num_loader_workers <= 0:
        return reader
    return DataLoader(reader, batch_size=None, num_workers=reader.num_loader_workers)


def padding_batch(schema: FeatureSchema) -> RecBatch:
    """One weight-0 row (ids 0, dense 0, labels 0): keeps a rank in step once its data runs out."""
    keys = schema.sparse_names
    return RecBatch(
        dense=torch.zeros(1, len(schema.dense)),
        sparse=KeyedJaggedTensor(
            keys=keys,
            values=torch.zeros(len(keys), dtype=torch.int64),
            lengths=torch.ones(len(keys), dtype=torch.int32),
            stride=1,
        ),
        labels=torch.zeros(1, len(schema.labels)),
        weights=torch.zeros(1),
        group_ids=torch.zeros(1, dtype=torch.int64),
    )


def pad_to_steps(loader: Iterable[RecBatch], steps: int, schema: FeatureSchema) -> Iterator[RecBatch]:
    """The loader's batches, then padding batches, ``steps`` in all (more batches is an error)."""
    n = 0
    for batch in loader:
        if n >= steps:
            raise ValueError(f"loader yielded more than the {steps} steps planned for this epoch")
        yield batch
        n += 1
    for _ in range(steps - n):
        yield padding_batch(schema)
