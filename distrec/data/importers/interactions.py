"""Interaction logs (one event a line: session/user, item, time) -> next-item sequences (StackRec).

Writes the layout of ``distrec data import sessions`` (what StackRec reads; Conure and MSD take
RecBole logs through their own importers); a line may carry more fields (category, user, ...),
which are ignored.

Sources (``src``): one delimited text file (CSV, TSV, ``;`` or ``|``; compressed or on S3), a glob
or a directory of them, or Parquet. The delimiter and the header are detected from the first
lines (``csv.Sniffer`` and the field types) unless given; ``columns`` names the session, item and
(optional) time columns: header names, or 0-based positions for a file without a header, e.g.
YooChoose clicks (``session,timestamp,item,category``): ``--columns 0,2,1``; Diginetica
(``sessionId;userId;itemId;timeframe;eventdate``): ``--delimiter ';' --columns
sessionId,itemId,timeframe``. Without ``columns`` a header's names are matched (session/user,
item/product/movie, time/timestamp/date). Times are numbers or ISO dates/times; without a time
column the file order is the order of events.

Each session's events are put in time order (ties keep file order); consecutive repeats of an item
are dropped with ``drop_repeats``; items seen fewer than ``min_item_count`` times are dropped;
each sequence keeps its last ``max_items`` events and sequences shorter than ``min_items`` are
dropped. Items get ids 1..n in order of first appearance (``items.parquet`` maps them back).
Sequences are split by ``split`` fractions, at random (``split_by="random"``, seeded) or by time
(``split_by="time"``: the sequences whose last event is latest are the test set, the ones before
them validation); then written as ``distrec data import sessions`` writes them.

Checks before anything is written: the columns exist, every sampled line has the header's field
count (a file of one whole sequence per line is sent to ``distrec data import sessions``), and
the item column holds no dates/times.

Memory: this importer is not streaming. Building a session's sequence needs all its events, so
the log is held as three arrays, session code, item code and time, 8 bytes each (24 B per
interaction), plus the session and item vocabularies (one Python dict entry, ~100 B, per distinct
session and item); the sort and the filters add about 30 B per interaction at peak. The file
itself is read in 8 MiB blocks. Measured (benchmarks/import_path.py, 250k -> 1M YooChoose-like lines,
a session per 10 events): ~110 B of peak RSS per extra line, pyarrow's CSV read-ahead included.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from distrec.data.importers.common import (
    Progress,
    Vocab,
    WriteOptions,
    csv_batches,
    input_files,
    time_values,
)
from distrec.data.importers.sessions import write_sequence_splits
from distrec.data.importers.text_format import (
    TextLayout,
    detect_layout,
    guess_interaction_columns,
    is_date_time,
    time_column,
)
from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError, DataError
from distrec.storage import filesystem

Column = str | int


def import_interactions(
    src: str,
    out: str,
    *,
    columns: str | tuple | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    split_by: str = "random",
    drop_repeats: bool = False,
    min_items: int = 2,
    max_items: int | None = None,
    min_item_count: int = 1,
    max_len: int = 50,
    cl_chunks: int = 5,
    seed: int = 0,
    row_group_size: int = 256,
    overwrite: bool = False,
    progress_every_s: float = 10.0,
) -> FeatureSchema:
    """Import the interaction log ``src`` as next-item sequences under ``out`` (see the module)."""
    if split_by not in ("random", "time"):
        raise ConfigError(f"interactions import: split_by must be 'random' or 'time', got {split_by!r}")
    if min_items < 2 or (max_items is not None and max_items < min_items) or min_item_count < 1:
        raise ConfigError(f"interactions import: need min_items >= 2, max_items >= min_items and "
                          f"min_item_count >= 1, got {min_items}, {max_items}, {min_item_count}")
    wanted = _parse_columns(columns)
    options = WriteOptions(row_group_size, 1 << 20, overwrite, progress_every_s)
    log = _read_log(input_files(src, "interaction log"), wanted, _parse_delimiter(delimiter), header,
                    progress_every_s)
    if split_by == "time" and not log.has_time:
        raise ConfigError("interactions import: split_by='time' needs a time column (--columns session,item,time)")
    values, offsets, last_times, item_tokens = _sequences(log, drop_repeats, min_items, max_items, min_item_count)
    order = np.argsort(last_times, kind="stable") if split_by == "time" else None
    return write_sequence_splits(_Slices(values, offsets), len(item_tokens) + 1, out, max_len=max_len,
                                 split=split, cl_chunks=cl_chunks, seed=seed, item_tokens=item_tokens,
                                 options=options, order=order)


def _parse_columns(columns) -> tuple[Column, ...] | None:
    if columns is None:
        return None
    parts = columns.split(",") if isinstance(columns, str) else list(columns)
    parsed = tuple(int(p) if isinstance(p, int) or str(p).strip().isdigit() else str(p).strip() for p in parts)
    if len(parsed) not in (2, 3):
        raise ConfigError(f"interactions import: --columns takes session,item[,time] (names or 0-based "
                          f"positions), got {columns!r}")
    return parsed


def _parse_delimiter(delimiter: str | None) -> str | None:
    if delimiter is None:
        return None
    delimiter = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}.get(delimiter, delimiter)
    if len(delimiter) != 1:
        raise ConfigError(f"interactions import: --delimiter must be one character (or 'tab'), got {delimiter!r}")
    return delimiter


# --- reading: the whole log as three arrays ------------------------------------------------------


class _Log:
    def __init__(self) -> None:
        self.sessions, self.items = Vocab(), Vocab()
        self.session_codes: list[np.ndarray] = []
        self.item_codes: list[np.ndarray] = []
        self.times: list[np.ndarray] = []
        self.has_time = True
        self.events = 0

    def add(self, session: pa.Array, item: pa.Array, time: np.ndarray) -> None:
        self.sessions.add(session)
        self.items.add(item)
        self.session_codes.append(self.sessions.encode(session))
        self.item_codes.append(self.items.encode(item))
        self.times.append(time)
        self.events += len(time)


def _read_log(files: list[str], wanted, delimiter, header, progress_every_s: float) -> _Log:
    log = _Log()
    for path in files:
        progress = Progress(f"{path} (reading)", progress_every_s)
        batches = _parquet_batches(path, wanted) if path.endswith(".parquet") else \
            _text_batches(path, wanted, delimiter, header)
        for first_line, (session, item, time_name, batch) in batches:
            for column, arr in (("session", session), ("item", item)):
                if arr.null_count:
                    row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
                    raise DataError(f"{path}: the {column} column is empty on line {first_line + row}")
            if time_name is None:
                log.has_time = False
                time = np.arange(log.events, log.events + len(session), dtype=np.float64)
            else:
                time = time_values(batch.column(time_name), path, time_name, first_line)
            log.add(session, item, time)
            progress.add(len(session))
        progress.close()
    if not log.events:
        raise DataError(f"{files[0]}: no interactions (expected one event per line)")
    return log


def _text_batches(path: str, wanted, delimiter, header) -> Iterator[tuple[int, tuple]]:
    layout = detect_layout(path, delimiter, header)
    names = list(layout.header) if layout.header else [f"f{i}" for i in range(layout.fields)]
    session, item, time = _resolve_columns(layout, names, wanted)
    _check_sample(layout, names, item)
    used = {c: pa.string() for c in (session, item, time) if c is not None}
    line = layout.first_data_line
    for batch in csv_batches(path, names, used, delimiter=layout.delimiter, header_lines=1 if layout.header else 0):
        yield line, (batch.column(session), batch.column(item), time, batch)
        line += batch.num_rows


def _parquet_batches(path: str, wanted) -> Iterator[tuple[int, tuple]]:
    import pyarrow.parquet as pq

    fs, fs_path = filesystem(path)
    with fs.open(fs_path, "rb") as fh:
        pf = pq.ParquetFile(fh)
        names = pf.schema_arrow.names
        if wanted is None or any(isinstance(c, int) for c in wanted):
            raise ConfigError(f"{path}: name the Parquet columns: --columns session,item[,time] (its columns: {names})")
        missing = [c for c in wanted if c not in names]
        if missing:
            raise DataError(f"{path}: no column(s) {missing}; its columns: {names}")
        row = 1
        for batch in pf.iter_batches(columns=list(wanted)):
            time = wanted[2] if len(wanted) == 3 else None
            yield row, (batch.column(wanted[0]).cast(pa.string()), batch.column(wanted[1]).cast(pa.string()),
                        time, batch)
            row += batch.num_rows


def _resolve_columns(layout: TextLayout, names: list[str], wanted) -> tuple[str, str, str | None]:
    """(session, item, time) column names, from ``wanted`` or the header's names."""
    if wanted is None:
        if not layout.header and (layout.fields == 2 or (layout.fields == 3 and time_column(layout) in (2, None))):
            wanted = (0, 1, 2)[:layout.fields]  # session, item[, time]: the order of the common logs
        else:
            wanted = guess_interaction_columns(layout) if layout.header else None
            if wanted is None:
                guess = guess_interaction_columns(layout)
                example = ",".join(str(c) for c in guess if c is not None) if guess else "SESSION,ITEM,TIME"
                what = f"header {list(layout.header)}" if layout.header else f"no header and {layout.fields} fields"
                raise DataError(f"{layout.path}: cannot tell which columns hold the session, item and time "
                                f"({what}); say so with --columns {example} (header names, or 0-based positions)")
    resolved = []
    for c in wanted:
        if c is None:
            resolved.append(None)
        elif isinstance(c, int):
            if c >= len(names):
                raise DataError(f"{layout.path}: column position {c} is past the {len(names)} fields of line "
                                f"{layout.first_data_line} ({layout.lines[layout.first_data_line - 1]!r})")
            resolved.append(names[c])
        elif c not in names:
            raise DataError(f"{layout.path}: no column {c!r}; " + (
                f"the header has {list(layout.header)}" if layout.header else
                f"the file has no header (line 1: {layout.lines[0]!r}): give 0-based positions"))
        else:
            resolved.append(c)
    return resolved[0], resolved[1], resolved[2] if len(resolved) == 3 else None


def _check_sample(layout: TextLayout, names: list[str], item: str) -> None:
    for row_no, row in enumerate(layout.rows):
        if len(row) != len(names):
            line = layout.first_data_line + row_no
            raise DataError(
                f"{layout.path} line {line}: {len(row)} {layout.delimiter!r}-separated fields, expected {len(names)} "
                f"like line {layout.first_data_line}: an interaction log has one event, the same fields, per line. "
                f"A file of one whole sequence per line is read by: distrec data import sessions {layout.path} OUT")
    values = layout.column_values(names.index(item))
    if values and all(is_date_time(v) for v in values if v):
        raise DataError(f"{layout.path}: the item column {item!r} holds dates/times ({values[0]!r}); "
                        "check --columns (session,item,time)")


# --- sequences ----------------------------------------------------------------------------------


def _sequences(log: _Log, drop_repeats: bool, min_items: int, max_items: int | None,
               min_item_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(item ids, sequence offsets, each sequence's last time, item tokens in id order)."""
    sessions = np.concatenate(log.session_codes)
    items = np.concatenate(log.item_codes)
    times = np.concatenate(log.times)
    log.session_codes = log.item_codes = log.times = []
    if min_item_count > 1:
        frequent = np.bincount(items)[items] >= min_item_count
        sessions, items, times = sessions[frequent], items[frequent], times[frequent]
    order = np.lexsort((times, sessions))  # stable: equal times keep file order
    sessions, items, times = sessions[order], items[order], times[order]
    del order
    keep = np.ones(len(items), dtype=bool)
    if drop_repeats:
        keep[1:] = (sessions[1:] != sessions[:-1]) | (items[1:] != items[:-1])
    sessions, items, times = sessions[keep], items[keep], times[keep]
    starts = np.flatnonzero(np.r_[True, sessions[1:] != sessions[:-1]]) if len(sessions) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(sessions)]
    if max_items is not None:
        seq_of = np.repeat(np.arange(len(starts)), ends - starts)
        keep = ends[seq_of] - np.arange(len(items)) <= max_items
        items, times = items[keep], times[keep]
        lengths = np.minimum(ends - starts, max_items)
    else:
        lengths = ends - starts
    offsets = np.r_[0, np.cumsum(lengths)]
    long_enough = lengths >= min_items
    seq_keep = np.repeat(long_enough, lengths)
    items, last_times = items[seq_keep], times[offsets[1:] - 1][long_enough]
    offsets = np.r_[0, np.cumsum(lengths[long_enough])]
    used, ids = np.unique(items, return_inverse=True)  # item codes in first-appearance order
    tokens = log.items.tokens()
    return (ids.astype(np.int64) + 1, offsets, last_times, [str(tokens[c - 1]) for c in used.tolist()])


class _Slices:
    """Sequences as slices of one array: re-iterable, as write_sequence_splits needs."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray) -> None:
        self.values, self.offsets = values, offsets

    def __iter__(self) -> Iterator[np.ndarray]:
        values = self.values
        for start, end in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist()):
            yield values[start:end]
