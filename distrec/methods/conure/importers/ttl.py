"""Tencent TTL continual-learning files (the Conure/TERACON format) -> one Conure task dataset.

Each line: ``source_len`` comma-separated item ids of the user's history, left-padded with 0;
for item_rec and profile tasks then an empty field and one or more target ids::

    0,0,...,0,154,155,157            (next_item: the source only)
    0,0,...,0,141,142,...,152,,6,8,9  (item_rec: targets 6, 8, 9; profile: exactly one label)

next_item: train holds each sequence without its last two items, valid without its last, test
all of it. item_rec and profile split users (lines) into train/valid/test (seeded); an item_rec
line gives one row per target. Profile labels are mapped to classes 0..C-1 in sorted order
(``classes`` in task.yaml keeps the raw values). Source ids are kept as they are, so every task
of one TTL set shares T1's vocabulary: pass ``num_items`` (T1's) when importing later tasks.

The file is read twice, ``block_lines`` lines at a time, so memory does not grow with its size.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from distrec.data.importers.common import require_file
from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError, DataError
from distrec.methods.conure.config import TaskKind
from distrec.methods.conure.importers.common import (
    NEXT_ITEM_DROP,
    SPLITS,
    slices_array,
    split_of_users,
    write_task_blocks,
)
from distrec.storage import filesystem

KINDS = TaskKind.values()
DEFAULT_BLOCK_LINES = 65536


def import_conure_ttl(src: str, out: str, *, kind: str = "next_item", source_len: int = 100,
                      num_items: int | None = None, num_targets: int | None = None,
                      max_len: int | None = None, valid_share: float = 0.1, test_share: float = 0.1,
                      seed: int = 0, overwrite: bool = False,
                      block_lines: int = DEFAULT_BLOCK_LINES) -> FeatureSchema:
    """Two streamed passes over ``src``, ``block_lines`` lines at a time: the first validates
    every line and sizes the vocabularies, the second writes the splits."""
    if kind not in KINDS:
        raise ConfigError(f"conure_ttl import: kind must be one of {KINDS}, got {kind!r}")
    if block_lines <= 0:
        raise ConfigError(f"conure_ttl import: block_lines must be positive, got {block_lines}")
    ttl = TtlFile(src, kind, source_len, block_lines)
    summary = ttl.summary()
    if num_items is None:
        num_items = summary.top_source + 1
    elif summary.top_source >= num_items:
        raise DataError(f"{src}: source id {summary.top_source} is outside the item vocabulary "
                        f"[0, {num_items}) given by num_items={num_items}")
    max_len = max_len or source_len
    if kind == "next_item":
        return write_task_blocks(out, kind, _next_item_rows(ttl, max_len), num_items, num_items,
                                 max_len, overwrite)

    part = split_of_users(summary.lines, valid_share, test_share, seed)
    info, classes = {}, None
    if kind == "profile":
        classes = np.array(sorted(summary.classes), dtype=np.int64)
        num_outputs, info["classes"] = len(classes), classes.tolist()
    else:
        num_outputs = num_targets or summary.top_target + 1
        if summary.top_target >= num_outputs:
            raise DataError(f"{src}: target id {summary.top_target} is outside [0, {num_outputs}) "
                            f"given by num_targets={num_targets}")
    rows = _user_split_rows(ttl, part, classes, max_len)
    return write_task_blocks(out, kind, rows, num_items, num_outputs, max_len, overwrite, **info)


@dataclasses.dataclass
class TtlBlock:
    """Consecutive data lines: source ids without padding (line i's are
    ``sources[source_offsets[i]:source_offsets[i + 1]]``) and target ids, ``target_counts`` a line."""

    source_offsets: np.ndarray
    sources: np.ndarray
    target_counts: np.ndarray
    targets: np.ndarray

    @classmethod
    def from_padded(cls, padded: np.ndarray, target_counts: list[int], targets: list[int]) -> TtlBlock:
        kept = padded != 0
        offsets = np.zeros(len(padded) + 1, dtype=np.int64)
        np.cumsum(kept.sum(axis=1), out=offsets[1:])
        return cls(offsets, padded[kept], np.array(target_counts, dtype=np.int64),
                   np.array(targets, dtype=np.int64))

    @property
    def lines(self) -> int:
        return len(self.target_counts)

    def sequences(self, lines: np.ndarray, max_len: int, drop: int = 0) -> pa.ListArray:
        """The source sequences of ``lines`` without their last ``drop`` ids, cut to max_len."""
        stops = self.source_offsets[lines + 1] - drop
        return slices_array(self.sources, self.source_offsets[lines], stops, max_len)


@dataclasses.dataclass
class TtlSummary:
    lines: int
    top_source: int
    top_target: int
    classes: set[int]


@dataclasses.dataclass
class TtlFile:
    src: str
    kind: str
    source_len: int
    block_lines: int

    def summary(self) -> TtlSummary:
        """Pass 1: every line checked; only counts, largest ids and profile classes kept."""
        summary = TtlSummary(lines=0, top_source=0, top_target=-1, classes=set())
        for block in self.blocks():
            summary.lines += block.lines
            summary.top_source = max(summary.top_source, int(block.sources.max(initial=0)))
            summary.top_target = max(summary.top_target, int(block.targets.max(initial=-1)))
            if self.kind == "profile":
                summary.classes.update(np.unique(block.targets).tolist())
        if not summary.lines:
            raise DataError(f"{self.src}: no lines")
        return summary

    def blocks(self) -> Iterator[TtlBlock]:
        """The data lines, ``block_lines`` file lines at a time (blank lines are skipped)."""
        require_file(self.src)
        fs, path = filesystem(self.src)
        with fs.open(path, "r", compression="infer") as fh:
            first_line_no = 1
            while lines := list(itertools.islice(fh, self.block_lines)):
                block = self._parse(lines, first_line_no)
                first_line_no += len(lines)
                del lines  # the text is parsed: free it while the block is in use
                if block.lines:
                    yield block

    def _parse(self, lines: list[str], first_line_no: int) -> TtlBlock:
        padded = np.empty((len(lines), self.source_len), dtype=np.int64)
        target_counts, targets = [], []
        for line_no, line in enumerate(lines, start=first_line_no):
            line = line.strip()
            if not line:
                continue
            source, target = self._fields(line, line_no)
            row = len(target_counts)
            try:
                padded[row] = source  # numpy parses each field as int() does
                ids = [int(f) for f in target]
            except ValueError:
                ids = None
            if ids is None or "-" in line:  # the checked path names the bad field, refuses negatives
                padded[row] = _ints(source, self.src, line_no)
                ids = _ints(target, self.src, line_no).tolist()
            if self.kind == "profile" and len(ids) != 1:
                raise DataError(f"{self.src}: line {line_no} has {len(ids)} labels; a profile task "
                                "needs exactly one")
            target_counts.append(len(ids))
            targets += ids
        return TtlBlock.from_padded(padded[:len(target_counts)], target_counts, targets)

    def _fields(self, line: str, line_no: int) -> tuple[list[str], list[str]]:
        """(source fields, target fields) of a non-blank line, its layout checked."""
        fields = line.split(",")
        source, rest = fields[:self.source_len], fields[self.source_len:]
        if len(source) < self.source_len or any(f == "" for f in source):
            raise DataError(f"{self.src}: line {line_no} has {sum(f != '' for f in source)} source ids "
                            f"before the first empty field; expected {self.source_len} (0-padded)")
        if self.kind == "next_item" and rest:
            raise DataError(f"{self.src}: line {line_no} has targets after the source sequence; "
                            "import it with --kind item_rec or --kind profile")
        if self.kind != "next_item" and (len(rest) < 2 or rest[0] != ""):
            raise DataError(f"{self.src}: line {line_no} needs an empty field and then target id(s) "
                            f"after the {self.source_len} source ids")
        return source, rest[1:]


def _next_item_rows(ttl: TtlFile, max_len: int) -> Iterator[tuple[str, pa.Array, None]]:
    for block in ttl.blocks():
        lengths = np.diff(block.source_offsets)
        for name in SPLITS:
            drop = NEXT_ITEM_DROP[name]
            yield name, block.sequences(np.flatnonzero(lengths - drop >= 2), max_len, drop), None


def _user_split_rows(ttl: TtlFile, part: np.ndarray, classes: np.ndarray | None, max_len: int
                     ) -> Iterator[tuple[str, pa.Array, np.ndarray]]:
    """item_rec / profile rows: one per target of each line, in the split ``part`` gives the line;
    profile labels become their index in the sorted ``classes``."""
    done = 0
    for block in ttl.blocks():
        block_part = part[done:done + block.lines]
        if len(block_part) < block.lines:
            raise DataError(f"{ttl.src}: the file changed while it was being imported")
        done += block.lines
        line_of_target = np.repeat(np.arange(block.lines), block.target_counts)
        labels = block.targets if classes is None else np.searchsorted(classes, block.targets)
        for i, name in enumerate(SPLITS):
            chosen = block_part[line_of_target] == i
            yield name, block.sequences(line_of_target[chosen], max_len), labels[chosen]


def _ints(fields: list[str], src: str, line_no: int) -> np.ndarray:
    try:
        values = np.array([int(f) for f in fields], dtype=np.int64)
    except ValueError:
        bad = next(f for f in fields if not f.strip().lstrip("-").isdigit())
        raise DataError(f"{src}: line {line_no} has {bad!r}; expected an integer id") from None
    if (values < 0).any():
        raise DataError(f"{src}: line {line_no} has a negative id; expected ids >= 0")
    return values
