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

Sequences are split (seeded) by ``split`` fractions (ours: 0.8/0.1/0.1 of sequences); the model
predicts the last item of each validation/test sequence from the items before it. Training
sequences longer than ``max_len`` are cut into windows of ``max_len`` items that overlap by
one item, so every item after the first is a target exactly once. The training split is
written in ``cl_chunks`` chunks of (nearly) equal size: continual-learning stages read the first
k chunks (``train/chunk-[0-{k-1}]``), so the data seen at 0.2 is contained in the data at 0.4.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa

from distrec.data.importers.common import ImportOutput, Progress, WriteOptions
from distrec.data.schema import FeatureSchema, SequenceField
from distrec.data.storage import filesystem, list_parquet_files
from distrec.errors import ConfigError, DataError

SEQUENCE_FIELD = "item_seq"
ROW_SCHEMA = pa.schema([(SEQUENCE_FIELD, pa.list_(pa.int64()))])
MAX_CHUNKS = 10


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
    if _is_parquet(src):
        sequences = list(_parquet_sequences(src, item_column))
        tokens = None
        largest = max((int(s.max()) for s in sequences if len(s)), default=0)
        if num_items is not None and largest >= num_items:
            raise DataError(f"{src}: column '{item_column}' has id {largest} >= num_items={num_items}")
        vocab_size = num_items or largest + 1
    else:
        sequences, tokens = _text_sequences(src, pad_token, progress_every_s)
        vocab_size = len(tokens) + 1
    return write_sequence_splits(
        sequences, vocab_size, out, max_len=max_len, split=split, cl_chunks=cl_chunks, seed=seed,
        item_tokens=tokens, options=WriteOptions(row_group_size, 1 << 20, overwrite, progress_every_s),
    )


def write_sequence_splits(
    sequences: list[np.ndarray],
    num_items: int,
    out: str,
    *,
    max_len: int = 50,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    cl_chunks: int = 5,
    seed: int = 0,
    item_tokens: list[str] | None = None,
    options: WriteOptions | None = None,
) -> FeatureSchema:
    """Write ``sequences`` (int64 arrays of ids in 1..num_items-1) as the layout described above."""
    _check_options(max_len, split, cl_chunks)
    options = options or WriteOptions(256, 1 << 20, False, 10.0)
    kept = [s for s in sequences if len(s) >= 2]
    if len(kept) < 3:
        raise DataError(f"{out}: need at least 3 sequences of 2+ items to split, got {len(kept)}")
    order = np.random.default_rng(seed).permutation(len(kept))
    n_train = int(round(split[0] * len(kept)))
    n_valid = int(round(split[1] * len(kept)))
    parts = {"train": order[:n_train], "valid": order[n_train:n_train + n_valid],
             "test": order[n_train + n_valid:]}
    schema = FeatureSchema(sparse=(), sequence=(SequenceField(SEQUENCE_FIELD, max_len=max_len,
                                                              num_embeddings=num_items),), labels=())
    output = ImportOutput(out, options)
    with output:
        windows = [w for i in parts["train"] for w in _windows(kept[i], max_len)]
        bounds = np.linspace(0, len(windows), cl_chunks + 1).round().astype(int)
        progress = Progress(f"{out}/train", options.progress_every_s)
        for c in range(cl_chunks):
            _write(output.parts(f"train/chunk-{c}", ROW_SCHEMA), windows[bounds[c]:bounds[c + 1]],
                   options.row_group_size, progress)
        progress.close()
        for name in ("valid", "test"):
            _write(output.parts(name, ROW_SCHEMA), [kept[i][-max_len:] for i in parts[name]],
                   options.row_group_size, None)
        if item_tokens is not None:
            output.write_file("items.parquet", pa.table({
                "item_id": pa.array(np.arange(1, len(item_tokens) + 1), pa.int64()),
                "raw_item_id": pa.array(item_tokens, pa.string()),
            }))
        return output.finish(schema)


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


def _windows(seq: np.ndarray, max_len: int) -> Iterator[np.ndarray]:
    """Windows of at most ``max_len`` items overlapping by one, oldest first; the last ends at the end."""
    ends = list(range(len(seq), 1, -(max_len - 1)))
    for end in reversed(ends):
        window = seq[max(0, end - max_len):end]
        if len(window) >= 2:
            yield window


def _write(writer, rows: list[np.ndarray], chunk: int, progress: Progress | None) -> None:
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        offsets = np.r_[0, np.cumsum([len(r) for r in part])].astype(np.int32)
        values = np.concatenate(part) if part else np.zeros(0, np.int64)
        writer.write(pa.table({SEQUENCE_FIELD: pa.ListArray.from_arrays(
            pa.array(offsets), pa.array(values, pa.int64()))}, schema=ROW_SCHEMA))
        if progress is not None:
            progress.add(len(part))
    writer.close()


def _is_parquet(src: str) -> bool:
    fs, path = filesystem(src)
    return fs.isdir(path) or path.endswith(".parquet")


def _parquet_sequences(src: str, column: str) -> Iterable[np.ndarray]:
    import pyarrow.parquet as pq

    for file in list_parquet_files(src):
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
                if len(values) and values[offsets[0]:offsets[-1]].min() < 1:
                    raise DataError(f"{file}: column '{column}' has ids < 1 (0 is reserved for padding)")
                for a, b in zip(offsets[:-1], offsets[1:]):
                    yield values[a:b]


def _text_sequences(src: str, pad_token: str, progress_every_s: float) -> tuple[list[np.ndarray], list[str]]:
    fs, path = filesystem(src)
    if not fs.isfile(path):
        raise DataError(f"session file not found: {src}")
    ids: dict[str, int] = {}
    sequences = []
    progress = Progress(src, progress_every_s)
    with fs.open(path, "rt", compression="infer") as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            tokens = [t.strip() for t in line.split(",")]
            if "" in tokens:
                raise DataError(
                    f"{src} line {line_no}: empty item token at position {tokens.index('') + 1}; "
                    "expected comma-separated item tokens, one sequence per line"
                )
            seq = [ids.setdefault(t, len(ids) + 1) for t in tokens if t != pad_token]
            sequences.append(np.asarray(seq, dtype=np.int64))
            progress.add(1)
    progress.close()
    if not sequences:
        raise DataError(f"{src}: no sequences (expected one comma-separated sequence per line)")
    return sequences, list(ids)
