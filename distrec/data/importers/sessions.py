"""Item sequences -> next-item training data: train/valid/test splits of sequences as Parquet.

Sources (``src``):
  * the comma-separated session format of the NextItNet family (one sequence per line, oldest
    item first, item tokens separated by commas; ``pad_token`` entries, used by those files for
    left padding, are dropped). Tokens become ids 1..n in order of first appearance;
    ``items.parquet`` maps them back.
  * Parquet with a list<int64> column ``item_column`` whose ids are already 1-based, e.g. the
    per-user ``sequences/`` that ``distrec data import recbole`` writes from an interaction log
    (user, item, time).

Output (under ``out``)::

    train/chunk-0 .. chunk-{cl_chunks-1}/part-*.parquet   training windows, in nested-growth order
    valid/ test/part-*.parquet                            one row per held-out sequence
    schema.yaml     sequence: [{name: item_seq, num_embeddings: n + 1, max_len}], labels: []

Sequences of 2+ items are split (seeded) by ``split`` fractions (ours: 0.8/0.1/0.1 of
sequences); the model predicts the last item of each validation/test sequence from the items
before it. Training sequences longer than ``max_len`` are cut into windows of ``max_len`` items
that overlap by one item, so every item after the first is a target exactly once. The training
sequences are written in ``cl_chunks`` chunks of (nearly) equal numbers of sequences (the
windows of one sequence stay in one chunk): continual-learning stages read the first k chunks
(``train/chunk-[0-{k-1}]``), so the data seen at 0.2 is contained in the data at 0.4. Within
each output directory rows keep the order of the source.

A text source is checked before anything is written: a file whose lines are events of an
interaction log (a header naming session/item columns, dates or times in the fields, another
delimiter than the comma, or narrow lines whose first field repeats as a session id does) is
refused with a DataError that names the ``distrec data import interactions`` call reading it; a
click table (a header with click/label columns) is sent to ``distrec data import table``.

The source is read twice and never held in memory: the first pass counts the sequences (and
builds the token vocabulary of a text file), the second writes each sequence where the seeded
split sends it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distrec.data.importers.common import (
    ImportOutput,
    Progress,
    Vocab,
    WriteOptions,
    require_file,
    text_blocks,
)
from distrec.data.importers.text_format import (
    delimiter_name,
    detect_layout,
    interactions_command,
    label_columns,
    looks_like_event_log,
)
from distrec.data.schema import FeatureSchema, SequenceField
from distrec.errors import ConfigError, DataError
from distrec.storage import filesystem, list_parquet_files

SEQUENCE_FIELD = "item_seq"
ROW_SCHEMA = pa.schema([(SEQUENCE_FIELD, pa.list_(pa.int64()))])
MAX_CHUNKS = 10
VALID, TEST = MAX_CHUNKS, MAX_CHUNKS + 1  # destinations after the training chunks 0..cl_chunks-1
TEXT_BLOCK_BYTES = 8 << 20  # a session file is parsed a block of lines at a time


def import_sessions(
    src: str,
    out: str,
    *,
    max_len: int = 50,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    cl_chunks: int = 5,
    pad_token: str = "0",
    item_column: str = "item_seq",
    num_items: int | None = None,
    seed: int = 0,
    row_group_size: int = 256,
    overwrite: bool = False,
    progress_every_s: float = 10.0,
) -> FeatureSchema:
    """Import sequences from ``src`` (a session text file, or Parquet with ``item_column``)."""
    _check_options(max_len, split, cl_chunks)
    output = ImportOutput(out, WriteOptions(row_group_size, 1 << 20, overwrite, progress_every_s))
    source = _ParquetSequences(src, item_column) if _is_parquet(src) else _SessionText(src, pad_token)
    kept = _count_kept(source, src, progress_every_s)  # the source learns its items on the way
    return _write_splits(output, source, kept, source.num_items(num_items), max_len=max_len, split=split,
                         cl_chunks=cl_chunks, seed=seed, item_tokens=source.item_tokens())


def write_sequence_splits(
    sequences: Iterable[np.ndarray],
    num_items: int,
    out: str,
    *,
    max_len: int = 50,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    cl_chunks: int = 5,
    seed: int = 0,
    item_tokens: list[str] | None = None,
    options: WriteOptions | None = None,
    order: np.ndarray | None = None,
) -> FeatureSchema:
    """Write ``sequences`` (int64 arrays of ids in 1..num_items-1) as the layout described above.

    ``sequences`` is iterated twice, so it must be a collection (e.g. a list) or another
    re-iterable source, not a one-shot iterator. ``order`` (indices of the sequences of 2+ items,
    counted in source order) replaces the seeded permutation: training takes its first ranks,
    then validation, then test, e.g. sequences sorted by their last event for a split by time."""
    if iter(sequences) is sequences:
        raise ConfigError("write_sequence_splits: sequences are read twice; pass a list, not an iterator")
    _check_options(max_len, split, cl_chunks)
    options = options or WriteOptions(256, 1 << 20, False, 10.0)
    output = ImportOutput(out, options)
    kept = _count_kept(sequences, out, options.progress_every_s)
    if order is not None and not np.array_equal(np.sort(order), np.arange(kept)):
        raise ConfigError(f"write_sequence_splits: order must be a permutation of the {kept} sequences of 2+ items")
    return _write_splits(output, sequences, kept, num_items, max_len=max_len, split=split,
                         cl_chunks=cl_chunks, seed=seed, item_tokens=item_tokens, order=order)


def cl_chunk_glob(train_dir: str, chunks: int) -> str:
    """Glob of the first ``chunks`` training chunks written by ``write_sequence_splits``."""
    if not 1 <= chunks <= MAX_CHUNKS:
        raise ConfigError(f"continual-learning chunks must be in 1..{MAX_CHUNKS}, got {chunks}")
    return f"{train_dir.rstrip('/')}/chunk-[0-{chunks - 1}]/*.parquet"


def _check_options(max_len, split, cl_chunks) -> None:
    if max_len < 2:
        raise ConfigError(f"sessions import: max_len must be >= 2 (inputs and a target), got {max_len}")
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1) > 1e-6:
        raise ConfigError(f"sessions import: split must be 3 non-negative fractions summing to 1, got {split!r}")
    if not 1 <= cl_chunks <= MAX_CHUNKS:
        raise ConfigError(f"sessions import: cl_chunks must be in 1..{MAX_CHUNKS}, got {cl_chunks}")


# --- pass 1: count; split ------------------------------------------------------------------------


def _count_kept(sequences: Iterable[np.ndarray], what: str, progress_every_s: float) -> int:
    """Number of sequences of 2+ items (the others have no input/target pair and are dropped)."""
    progress = Progress(f"{what} (pass 1 of 2)", progress_every_s)
    kept = 0
    for seq in sequences:
        kept += len(seq) >= 2
        progress.add(1)
    progress.close()
    return kept


def _destinations(kept: int, split, cl_chunks: int, seed: int, order: np.ndarray | None = None) -> np.ndarray:
    """Where each kept sequence, in source order, goes: training chunk 0..cl_chunks-1, VALID or TEST.

    A seeded permutation ranks the sequences; the first ``round(split[0] * kept)`` ranks train,
    the next ``round(split[1] * kept)`` validate, the rest test. Training rank r goes to chunk
    ``r * cl_chunks // n_train``: chunks differ by at most one sequence, and the first k chunks
    are the same sequences whatever comes after them. A given ``order`` replaces the permutation."""
    if order is None:
        order = np.random.default_rng(seed).permutation(kept)
    n_train = round(split[0] * kept)
    n_valid = round(split[1] * kept)
    destinations = np.full(kept, TEST, dtype=np.uint8)
    destinations[order[:n_train]] = np.arange(n_train) * cl_chunks // max(n_train, 1)
    destinations[order[n_train:n_train + n_valid]] = VALID
    return destinations


# --- pass 2: write -------------------------------------------------------------------------------


def _write_splits(output: ImportOutput, sequences: Iterable[np.ndarray], kept: int, num_items: int, *,
                  max_len: int, split, cl_chunks: int, seed: int, item_tokens: list[str] | None,
                  order: np.ndarray | None = None) -> FeatureSchema:
    if kept < 3:
        raise DataError(f"{output.out}: need at least 3 sequences of 2+ items to split, got {kept}")
    destinations = _destinations(kept, split, cl_chunks, seed, order)
    schema = FeatureSchema(sparse=(), sequence=(SequenceField(SEQUENCE_FIELD, max_len=max_len,
                                                              num_embeddings=num_items),), labels=())
    with output:
        progress = Progress(f"{output.out} (pass 2 of 2)", output.options.progress_every_s)
        names = {c: f"train/chunk-{c}" for c in range(cl_chunks)} | {VALID: "valid", TEST: "test"}
        buffers = {destination: _RowBuffer(output.parts(name, ROW_SCHEMA), output.options.row_group_size, progress)
                   for destination, name in names.items()}
        for seq, destination in _with_destinations(sequences, destinations, output.out):
            buffers[destination].add([seq[-max_len:]] if destination >= VALID else _windows(seq, max_len))
        for buffer in buffers.values():
            buffer.flush()
        progress.close()
        if item_tokens is not None:
            output.write_file("items.parquet", pa.table({
                "item_id": pa.array(np.arange(1, len(item_tokens) + 1), pa.int64()),
                "raw_item_id": pa.array(item_tokens, pa.string()),
            }))
        return output.finish(schema)


def _with_destinations(sequences: Iterable[np.ndarray], destinations: np.ndarray,
                       what: str) -> Iterator[tuple[np.ndarray, int]]:
    """Each sequence of 2+ items with its destination, checking that pass 2 read what pass 1 counted."""
    kept = 0
    for seq in sequences:
        if len(seq) >= 2:
            if kept < len(destinations):
                yield seq, int(destinations[kept])
            kept += 1
    if kept != len(destinations):
        raise DataError(f"{what}: the source changed while importing: {len(destinations)} sequences of "
                        f"2+ items on the first pass, {kept} on the second")


def _windows(seq: np.ndarray, max_len: int) -> Iterator[np.ndarray]:
    """Windows of at most ``max_len`` items overlapping by one, oldest first; the last ends at the end."""
    ends = list(range(len(seq), 1, -(max_len - 1)))
    for end in reversed(ends):
        window = seq[max(0, end - max_len):end]
        if len(window) >= 2:
            yield window


class _RowBuffer:
    """Rows bound for one part writer, handed over ``size`` rows at a time."""

    def __init__(self, writer, size: int, progress: Progress) -> None:
        self.writer, self.size, self.progress = writer, size, progress
        self.rows: list[np.ndarray] = []

    def add(self, rows: Iterable[np.ndarray]) -> None:
        for row in rows:
            self.rows.append(row)
            if len(self.rows) == self.size:
                self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        offsets = np.r_[0, np.cumsum([len(r) for r in self.rows])].astype(np.int32)
        values = pa.array(np.concatenate(self.rows), pa.int64())
        self.writer.write(pa.table({SEQUENCE_FIELD: pa.ListArray.from_arrays(pa.array(offsets), values)},
                                   schema=ROW_SCHEMA))
        self.progress.add(len(self.rows))
        self.rows = []


# --- sources: re-iterable, each iteration streams the input from the start -----------------------


def _is_parquet(src: str) -> bool:
    fs, path = filesystem(src)
    return fs.isdir(path) or path.endswith(".parquet")


def _rows(values: np.ndarray, offsets: np.ndarray) -> Iterator[np.ndarray]:
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        yield values[start:end]


class _ParquetSequences:
    """The list<int> column ``column`` of Parquet files, whose ids need no vocabulary; iterating
    records the largest id."""

    def __init__(self, src: str, column: str) -> None:
        self.src, self.column = src, column
        self.largest = 0

    def num_items(self, requested: int | None) -> int:
        """The embedding size: ``requested``, checked against the ids seen, or the largest id + 1."""
        if requested is not None and self.largest >= requested:
            raise DataError(f"{self.src}: column '{self.column}' has id {self.largest} >= num_items={requested}")
        return requested or self.largest + 1

    def item_tokens(self) -> None:
        return None

    def __iter__(self) -> Iterator[np.ndarray]:
        import pyarrow.parquet as pq

        column = self.column
        for file in list_parquet_files(self.src):
            fs, path = filesystem(file)
            with fs.open(path, "rb") as fh:
                pf = pq.ParquetFile(fh)
                if column not in pf.schema_arrow.names:
                    raise DataError(f"{file}: no column '{column}' (columns: {pf.schema_arrow.names})")
                for batch in pf.iter_batches(columns=[column]):
                    col = batch.column(0)
                    if not pa.types.is_list(col.type) or not pa.types.is_integer(col.type.value_type):
                        raise DataError(f"{file}: column '{column}' has type {col.type}, expected list<int64>")
                    offsets = col.offsets.to_numpy()
                    values = col.values.to_numpy(zero_copy_only=False).astype(np.int64)
                    used = values[offsets[0]:offsets[-1]]
                    if len(used) and used.min() < 1:
                        raise DataError(f"{file}: column '{column}' has ids < 1 (0 is reserved for padding)")
                    self.largest = max(self.largest, int(used.max()) if len(used) else 0)
                    yield from _rows(values, offsets)


class _SessionText:
    """The sequences of a session text file. Token ids are assigned on first sight, so after one
    full pass ``vocab`` holds every token and a second pass yields the same ids."""

    def __init__(self, src: str, pad_token: str) -> None:
        require_file(src, "session file")
        refuse_event_logs(src, pad_token)
        self.src, self.pad_token = src, pad_token
        self.vocab = Vocab()
        self._vocab_complete = False

    def num_items(self, requested: int | None) -> int:
        """The embedding size: the number of distinct tokens + 1 (``requested`` is for Parquet)."""
        return self.vocab.num_embeddings

    def item_tokens(self) -> list[str]:
        return self.vocab.tokens()

    def __iter__(self) -> Iterator[np.ndarray]:
        lines = 0
        for first_line_no, text in self._blocks():
            tokens, line_numbers = self._tokens(text, first_line_no)
            ids, offsets = self._encode(tokens, line_numbers)
            lines += len(line_numbers)
            yield from _rows(ids, offsets)
        if not lines:
            raise DataError(f"{self.src}: no sequences (expected one comma-separated sequence per line)")
        self._vocab_complete = True

    def _blocks(self) -> Iterator[tuple[int, str]]:
        """(number of its first line, text) of blocks of whole lines, without the last newline."""
        for line_no, block in text_blocks(self.src, TEXT_BLOCK_BYTES):
            yield line_no, self._decode(block, line_no)

    def _decode(self, block: bytes, first_line_no: int) -> str:
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError as exc:
            line_no = first_line_no + block.count(b"\n", 0, exc.start)
            raise DataError(f"{self.src} line {line_no}: not UTF-8 text ({exc.reason})") from None

    def _tokens(self, text: str, first_line_no: int) -> tuple[pa.ListArray, np.ndarray]:
        """Each non-blank line's comma-separated tokens (whitespace trimmed), and its line number."""
        lines = pc.utf8_trim_whitespace(pa.array(text.split("\n"), pa.string()))
        filled = pc.not_equal(lines, "")
        line_numbers = first_line_no + np.flatnonzero(filled.to_numpy(zero_copy_only=False))
        tokens = pc.split_pattern(lines.filter(filled), ",")
        return tokens, line_numbers

    def _encode(self, tokens: pa.ListArray, line_numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids of the tokens but pads, and each line's offsets into them."""
        values = pc.utf8_trim_whitespace(tokens.flatten())
        self._check_not_empty(values, tokens, line_numbers)
        keep = pc.not_equal(values, self.pad_token)
        line_of_token = pc.list_parent_indices(tokens).to_numpy()
        lengths = np.bincount(line_of_token[keep.to_numpy(zero_copy_only=False)], minlength=len(tokens))
        values = values.filter(keep)
        if not self._vocab_complete:  # after one whole pass every token is known
            self.vocab.add(values)
        ids = self.vocab.encode(values)
        if len(ids) and ids.min() == 0:  # a token the first pass did not see
            raise DataError(f"{self.src}: the file changed while importing (new item tokens on the second pass)")
        return ids, np.r_[0, np.cumsum(lengths)]

    def _check_not_empty(self, values: pa.Array, tokens: pa.ListArray, line_numbers: np.ndarray) -> None:
        empty = np.flatnonzero(pc.equal(values, "").to_numpy(zero_copy_only=False))
        if len(empty):
            offsets = tokens.offsets.to_numpy() - tokens.offsets[0].as_py()
            line = int(np.searchsorted(offsets, empty[0], side="right")) - 1
            raise DataError(
                f"{self.src} line {line_numbers[line]}: empty item token at position {empty[0] - offsets[line] + 1}; "
                "expected comma-separated item tokens, one sequence per line"
            )


def refuse_event_logs(src: str, pad_token: str) -> None:
    """A DataError when the first lines of ``src`` are events of an interaction log, not sequences."""
    layout = detect_layout(src)
    reasons = []
    if layout.delimiter != "," and layout.fields > 1:
        reasons.append(f"its fields are separated by {layout.delimiter!r} ({delimiter_name(layout.delimiter)}), "
                       "not commas")
    if (why := looks_like_event_log(layout, pad_token)) is not None:
        reasons.append(why)
    if labels := label_columns(layout):
        raise DataError(
            f"{src}: not a session file: line 1 is a header with label column(s) {labels}, so it is a click table. "
            "`distrec data import sessions` reads one whole sequence per line (item tokens separated by commas, "
            f"oldest first). For a click table use: distrec data import table {src} OUT --spec SPEC.yaml "
            "(configs/data/table-spec.example.yaml)")
    if reasons:
        raise DataError(
            f"{src}: not a session file: {'; '.join(reasons)}, so each line looks like one event of an "
            "interaction log. `distrec data import sessions` reads one whole sequence per line (item tokens "
            f"separated by commas, oldest first). For one event per line use: {interactions_command(layout)}"
        )
