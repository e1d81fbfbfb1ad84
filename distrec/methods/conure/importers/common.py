"""Writing one Conure task dataset: ``train/ valid/ test/`` Parquet with an ``item_seq`` column
(list<int64>, oldest first, no padding ids) and, for item_rec / profile tasks, a ``target`` /
``label`` column; ``task.yaml`` (kind, num_outputs); ``schema.yaml`` last."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

import fsspec
import numpy as np
import pyarrow as pa
import yaml

from distrec.data.importers.common import ImportOutput, Progress, WriteOptions
from distrec.data.schema import FeatureSchema, SequenceField
from distrec.errors import ConfigError, DataError
from distrec.storage import filesystem, write_text_atomic

ITEM_FIELD = "item_seq"
LABEL_COLUMN = {"next_item": None, "item_rec": "target", "profile": "label"}
TASK_FILE = "task.yaml"
SPLITS = ("train", "valid", "test")
# next_item tasks: ids dropped from the end of each user's sequence per split (train without its
# last two, valid without its last, test all of it); a row needs 2 ids left
NEXT_ITEM_DROP = {"train": 2, "valid": 1, "test": 0}


def read_task_file(data: str) -> dict:
    """``<data>/task.yaml`` as a dict ({} when absent)."""
    path = posixpath.join(data, TASK_FILE)
    try:
        with fsspec.open(path, "r") as fh:
            raw = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        return {}
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a mapping with 'kind' and 'num_outputs'")
    return raw


def write_task_file(data: str, kind: str, num_outputs: int, **info) -> str:
    fs, path = filesystem(data)
    target = posixpath.join(path, TASK_FILE)
    text = yaml.safe_dump({"kind": str(kind), "num_outputs": int(num_outputs), **info}, sort_keys=False)
    write_text_atomic(target, text, fs)
    return target


def split_of_users(n: int, valid_share: float, test_share: float, seed: int) -> np.ndarray:
    """0 train / 1 valid / 2 test for n users, a seeded random partition."""
    if not (0 <= valid_share and 0 <= test_share and valid_share + test_share < 1):
        raise ConfigError(f"valid_share and test_share must be >= 0 with a sum below 1, got "
                          f"{valid_share} and {test_share}")
    order = np.random.default_rng(seed).permutation(n)
    split = np.zeros(n, dtype=np.int8)
    n_valid, n_test = round(n * valid_share), round(n * test_share)
    split[order[:n_valid]] = 1
    split[order[n_valid:n_valid + n_test]] = 2
    return split


def write_task(out: str, kind: str, splits: dict[str, tuple[list[np.ndarray], np.ndarray | None]],
               num_items: int, num_outputs: int, max_len: int, overwrite: bool, **info) -> FeatureSchema:
    """``splits[name] = (sequences, labels)``; sequences longer than max_len keep their end."""
    blocks = ((name, sequences_array(splits[name][0], max_len), splits[name][1]) for name in SPLITS)
    return write_task_blocks(out, kind, blocks, num_items, num_outputs, max_len, overwrite, **info)


def write_task_blocks(out: str, kind: str, blocks: Iterable[tuple[str, pa.Array, np.ndarray | None]],
                      num_items: int, num_outputs: int, max_len: int, overwrite: bool,
                      **info) -> FeatureSchema:
    """Like write_task, with the rows given as ``(split, item_seq array, labels)`` blocks that are
    appended to their split in order, so a streamed input never has to be held whole."""
    label = LABEL_COLUMN[kind]
    output = ImportOutput(out, WriteOptions(overwrite=overwrite))
    schema = FeatureSchema(sparse=(), sequence=(SequenceField(ITEM_FIELD, max_len=max_len, num_embeddings=num_items),),
                           labels=(label,) if label else ())
    arrow_schema = pa.schema([(ITEM_FIELD, pa.list_(pa.int64()))] + ([(label, pa.int64())] if label else []))
    progress = Progress(f"{kind} task {out}", output.options.progress_every_s)
    with output:
        writers = {name: output.parts(name, arrow_schema) for name in SPLITS}
        for name, seqs, labels in blocks:
            columns = [seqs] + ([pa.array(np.asarray(labels, dtype=np.int64))] if label else [])
            writers[name].write(pa.table(columns, schema=arrow_schema))
            progress.add(len(seqs))
        progress.close()
        output.committed.append(write_task_file(out, kind, num_outputs, **info))
        return output.finish(schema)


def sequences_array(seqs: list[np.ndarray], max_len: int) -> pa.ListArray:
    """One list<int64> per sequence, each cut to its last max_len ids."""
    lengths = np.fromiter(map(len, seqs), np.int64, len(seqs))
    stops = np.cumsum(lengths)
    values = np.concatenate(seqs).astype(np.int64, copy=False) if seqs else np.zeros(0, np.int64)
    return slices_array(values, stops - lengths, stops, max_len)


def slices_array(values: np.ndarray, starts: np.ndarray, stops: np.ndarray, max_len: int) -> pa.ListArray:
    """``values[starts[i]:stops[i]]`` per row as list<int64>, each cut to its last max_len ids."""
    starts = np.maximum(starts, stops - max_len)
    lengths = stops - starts
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # positions in values of every id kept, row after row
    taken = np.arange(offsets[-1]) + np.repeat(starts - offsets[:-1], lengths)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values[taken], pa.int64()))
