"""RecBole atomic datasets (ml-100k, ml-1m, ml-20m, Amazon, ...) -> distrec Parquet.

Output (under ``out``):
  train/ valid/ test/part-*.parquet  one row per interaction (plus sampled negatives): user_id,
      item_id, the .item and .user features, hist_item_id (the user's items strictly earlier in
      time, oldest first, at most ``max_history``), timestamp, rating (when the .inter has one),
      click (the label)
  sequences/part-*.parquet  one row per user: user_id, item_seq, rating_seq, ts_seq (time order)
  items.parquet   item_id, raw_item_id, item features, raw_<col> values, text (title | year | genres)
  users.parquet   user_id, raw_user_id, user features, raw_<col> values
  schema.yaml     written last

Ids: user_id and item_id are 1..n in order of first appearance (.item/.user rows first, then
.inter); every other token column gets its own 1-based vocabulary; 0 always means missing.

Labels: ``click = rating >= label_threshold``. When the .inter has no rating (implicit feedback),
or ``label_threshold=None``, every interaction is a positive, so a ranking model needs negatives:
set ``negatives_per_positive=k`` to add k rows per positive with a random item the user never
interacted with (seeded; same user, history and timestamp; click 0, rating NaN).

Memory: the .inter file is streamed, but its user/item/time columns are kept as int64 arrays
(24 bytes per interaction, plus a lexsort on (user, time) and the vocabularies:
benchmarks/import_path.py measured ~125 bytes of peak memory per interaction, so 100M
interactions need ~12 GB) because each user's history needs the whole user's timeline. Output rows are
built one row group at a time, so the history lists never exist for the whole file at once.
Side files (.item/.user) are read whole (one row per item/user). Without a timestamp column the
file order is the time order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from distrec.data.importers.atomic_files import (
    SideFeatures,
    atomic_batches,
    find_atomic_files,
    read_header,
    read_table,
    side_features,
)
from distrec.data.importers.common import (
    DEFAULT_ROW_GROUP_SIZE,
    DEFAULT_ROWS_PER_FILE,
    ImportOutput,
    Progress,
    Vocab,
    WriteOptions,
    numbers,
    require_columns,
)
from distrec.data.schema import FeatureSchema, SequenceField, SparseField
from distrec.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")
_RESERVED = {"user_id", "item_id", "hist_item_id", "timestamp", "rating", "click"}


def import_recbole(
    src: str,
    out: str,
    *,
    label_threshold: float | None = 4.0,
    negatives_per_positive: int = 0,
    max_history: int = 50,
    split: str = "leave_last_out",
    time_split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    exclude_columns: list[str] | None = None,
    token_prefix: dict[str, int] | None = None,
    shuffle: bool = True,
    seed: int = 0,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    overwrite: bool = False,
    progress_every_s: float = 10.0,
) -> FeatureSchema:
    """Import a RecBole atomic dataset (``src``: its .inter file or directory) into ``out``.

    split: ``"leave_last_out"`` (per user by time: last -> test, second-last -> valid, the rest ->
        train; a user with 2 interactions gets train+test, with 1 only train) or ``"time"``
        (global: the earliest ``time_split[0]`` of all interactions -> train, then valid, test).
    exclude_columns: side columns kept only as raw/text, not as features (default: every column
        whose name contains "title": free text, nearly one value per item).
    token_prefix: keep only the first n characters of these token columns (default
        ``{"zip_code": 3}``: the region, not the nearly unique full code).
    shuffle: shuffle train rows (seeded); valid/test stay in (user, time) order.
    """
    opts = WriteOptions(row_group_size, rows_per_file, overwrite, progress_every_s)
    _check_options(split, time_split, max_history, negatives_per_positive)
    output = ImportOutput(out, opts)
    files = find_atomic_files(src)
    rng = np.random.default_rng(seed)

    inter_header = read_header(files.inter)
    require_columns(files.inter, [c for c, _ in inter_header], ["user_id", "item_id"])
    side_tables = {}
    for kind, path in (("item", files.item), ("user", files.user)):
        if path:
            header = read_header(path)
            require_columns(path, [c for c, _ in header], [f"{kind}_id"])
            side_tables[kind] = (header, read_table(path, header))

    vocabs = {"user": Vocab(), "item": Vocab()}
    for kind, (_, table) in side_tables.items():
        vocabs[kind].add(table[f"{kind}_id"])
    timeline = _Timeline(*_read_interactions(files.inter, inter_header, vocabs, opts), max_history)

    taken = set(_RESERVED)
    exclude = set(exclude_columns) if exclude_columns is not None else None
    sides = {
        kind: _side(kind, side_tables.get(kind), vocabs[kind], taken, exclude,
                    {"zip_code": 3} if token_prefix is None else token_prefix)
        for kind in ("item", "user")
    }
    if label_threshold is None or timeline.rating is None:
        click = np.ones(len(timeline.user), dtype=np.float32)
    else:
        click = (timeline.rating >= label_threshold).astype(np.float32)
    split_of = (_leave_last_out(timeline) if split == "leave_last_out"
                else _time_split(timeline, time_split))

    schema = FeatureSchema(
        sparse=(
            SparseField("user_id", vocabs["user"].num_embeddings),
            SparseField("item_id", vocabs["item"].num_embeddings),
            *sides["item"].fields,
            *sides["user"].fields,
        ),
        sequence=(SequenceField("hist_item_id", "item_id", max_history),) if max_history else (),
        dense=tuple(sides["item"].dense + sides["user"].dense),
        labels=("click",),
        binary_labels=("click",),
        group_key="user_id",
    )
    with output:
        n_items = vocabs["item"].num_embeddings
        seen = np.unique(timeline.user * n_items + timeline.item) if negatives_per_positive else None
        row_schema = _rows_table(timeline, sides, *_empty_rows(timeline)).schema
        for which, name in enumerate(SPLITS):
            rows = _split_rows(timeline, click, split_of == which, negatives_per_positive, rng,
                               n_items, seen)
            if shuffle and name == "train":
                perm = rng.permutation(len(rows[0]))
                rows = tuple(None if a is None else a[perm] for a in rows)
            writer = output.parts(name, row_schema)
            progress = Progress(f"{out}/{name}", opts.progress_every_s)
            _write_rows(writer, timeline, sides, rows, opts.row_group_size, progress)
            writer.close()
        _write_sequences(output.parts("sequences", _SEQUENCE_SCHEMA), timeline, opts.row_group_size)
        output.write_file("items.parquet", _side_file("item", vocabs["item"], sides["item"]))
        output.write_file("users.parquet", _side_file("user", vocabs["user"], sides["user"]))
        return output.finish(schema)


def _check_options(split, time_split, max_history, negatives_per_positive) -> None:
    if split not in ("leave_last_out", "time"):
        raise ConfigError(f"recbole import: split must be 'leave_last_out' or 'time', got {split!r}")
    if split == "time" and (len(time_split) != 3 or min(time_split) < 0
                            or abs(sum(time_split) - 1) > 1e-6):
        raise ConfigError(
            f"recbole import: time_split must be 3 non-negative fractions summing to 1, "
            f"got {time_split!r}"
        )
    if max_history < 0 or negatives_per_positive < 0:
        raise ConfigError(
            f"recbole import: max_history and negatives_per_positive must be >= 0, got "
            f"{max_history} and {negatives_per_positive}"
        )


# --- reading -----------------------------------------------------------------------------------


def _read_interactions(path, header, vocabs, opts):
    """Stream the .inter file into int64 user/item ids, int64 times and float32 ratings."""
    names = {c for c, _ in header}
    columns = ["user_id", "item_id"] + [c for c in ("rating", "timestamp") if c in names]
    users, items, times, ratings = [], [], [], []
    progress = Progress(f"{path}", opts.progress_every_s)
    line = 2  # first data line (line 1 is the header)
    for batch in atomic_batches(path, header, columns,
                                {"rating": pa.float64(), "timestamp": pa.float64()}):
        for kind in ("user", "item"):
            col = batch.column(f"{kind}_id")
            if col.null_count:
                bad = line + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                raise DataError(f"{path}: column '{kind}_id' is empty on line {bad}; expected a token")
            vocabs[kind].add(col)
        users.append(vocabs["user"].encode(batch.column("user_id")))
        items.append(vocabs["item"].encode(batch.column("item_id")))
        if "timestamp" in names:
            times.append(numbers(batch, "timestamp", path, line, dtype=np.float64).astype(np.int64))
        if "rating" in names:
            ratings.append(numbers(batch, "rating", path, line))
        line += batch.num_rows
        progress.add(batch.num_rows)
    progress.close()
    if not users:
        raise DataError(f"{path}: no interactions (expected one per line after the header)")
    user, item = np.concatenate(users), np.concatenate(items)
    ts = np.concatenate(times) if times else np.arange(len(user), dtype=np.int64)
    return user, item, ts, (np.concatenate(ratings) if ratings else None)


def _side(kind, loaded, vocab, taken, exclude, token_prefix) -> SideFeatures:
    if loaded is None:
        return SideFeatures()
    header, table = loaded

    def name_for(col: str) -> str:
        name = col if col not in taken else f"{kind}_{col}"
        if name in taken:
            raise DataError(f"{kind} column '{col}' clashes with another feature named '{name}'")
        taken.add(name)
        return name

    skip = exclude if exclude is not None else {c for c, _ in header if "title" in c.lower()}
    text = [c for c, _ in header if c != f"{kind}_id"] if kind == "item" else None
    return side_features(table, header, f"{kind}_id", vocab, name_for, skip, token_prefix, text)


# --- timeline, splits, negatives -----------------------------------------------------------------


class _Timeline:
    """Interactions sorted by (user, time, file order), with each row's history window
    ``[hist_lo, hist_hi)``: the user's rows strictly earlier in time (ties excluded)."""

    def __init__(self, user, item, ts, rating, max_history: int) -> None:
        order = np.lexsort((ts, user))  # stable: equal times keep file order
        self.max_history = max_history
        self.user, self.item, self.ts = user[order], item[order], ts[order]
        self.rating = None if rating is None else rating[order]
        n = len(order)
        idx = np.arange(n)
        new_user = np.r_[True, self.user[1:] != self.user[:-1]]
        self.starts = np.flatnonzero(new_user)
        counts = np.diff(np.r_[self.starts, n])
        user_start = np.repeat(self.starts, counts)
        new_time = new_user | np.r_[True, self.ts[1:] != self.ts[:-1]]
        self.hist_hi = np.maximum.accumulate(np.where(new_time, idx, 0))
        self.hist_lo = np.maximum(user_start, self.hist_hi - max_history)
        self.from_end = np.repeat(self.starts + counts, counts) - idx - 1
        self.count = np.repeat(counts, counts)


def _leave_last_out(t: _Timeline) -> np.ndarray:
    split = np.zeros(len(t.user), dtype=np.int8)
    split[(t.from_end == 1) & (t.count >= 3)] = 1
    split[(t.from_end == 0) & (t.count >= 2)] = 2
    return split


def _time_split(t: _Timeline, fractions) -> np.ndarray:
    rank = np.empty(len(t.ts), dtype=np.int64)
    rank[np.argsort(t.ts, kind="stable")] = np.arange(len(t.ts))
    n_train = round(len(t.ts) * fractions[0])
    n_valid = round(len(t.ts) * fractions[1])
    return np.where(rank < n_train, 0, np.where(rank < n_train + n_valid, 1, 2)).astype(np.int8)


def _split_rows(t: _Timeline, click, mask, negatives: int, rng, n_items: int, seen):
    """(timeline row, item, click, rating) per output row; negatives follow their positive."""
    src = np.flatnonzero(mask)
    item, lab = t.item[src], click[src]
    rating = None if t.rating is None else t.rating[src]
    if negatives:
        neg_src = np.repeat(src[lab == 1], negatives)
        neg_item, ok = _sample_unseen(t.user[neg_src], n_items, seen, rng)
        order = np.argsort(np.r_[src, neg_src[ok]], kind="stable")
        src = np.r_[src, neg_src[ok]][order]
        item = np.r_[item, neg_item[ok]][order]
        lab = np.r_[lab, np.zeros(ok.sum(), np.float32)][order]
        if rating is not None:
            rating = np.r_[rating, np.full(ok.sum(), np.nan, np.float32)][order]
    return src, item, lab, rating


def _sample_unseen(users, n_items: int, seen, rng, rounds: int = 100):
    """Uniform random items in [1, n_items) the user never interacted with (``seen`` holds sorted
    user * n_items + item keys). Draws still colliding after ``rounds`` retries (users who saw
    nearly every item) are dropped: ``ok`` marks the kept ones."""
    items = rng.integers(1, n_items, size=len(users))
    todo = np.arange(len(users))
    for _ in range(rounds):
        keys = users[todo] * n_items + items[todo]
        at = np.minimum(np.searchsorted(seen, keys), len(seen) - 1)
        todo = todo[seen[at] == keys]
        if not len(todo):
            break
        items[todo] = rng.integers(1, n_items, size=len(todo))
    ok = np.ones(len(users), dtype=bool)
    ok[todo] = False
    return items, ok


# --- writing -----------------------------------------------------------------------------------


def _empty_rows(t: _Timeline):
    empty = np.zeros(0, np.int64)
    return empty, empty, np.zeros(0, np.float32), None if t.rating is None else np.zeros(0, np.float32)


def _rows_table(t: _Timeline, sides, src, item, click, rating) -> pa.Table:
    user = t.user[src]
    cols = {"user_id": pa.array(user, pa.int64()), "item_id": pa.array(item, pa.int64())}
    cols.update(sides["item"].take(item))
    cols.update(sides["user"].take(user))
    if t.max_history:
        lo, hi = t.hist_lo[src], t.hist_hi[src]
        lengths = hi - lo
        offsets = np.r_[0, np.cumsum(lengths)]
        flat = np.repeat(lo - offsets[:-1], lengths) + np.arange(offsets[-1])
        cols["hist_item_id"] = pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()), pa.array(t.item[flat], pa.int64())
        )
    cols["timestamp"] = pa.array(t.ts[src], pa.int64())
    if rating is not None:
        cols["rating"] = pa.array(rating, pa.float32())
    cols["click"] = pa.array(click, pa.float32())
    return pa.table(cols)


def _write_rows(writer, t: _Timeline, sides, rows, chunk: int, progress: Progress) -> None:
    for start in range(0, len(rows[0]), chunk):
        part = [None if a is None else a[start : start + chunk] for a in rows]
        writer.write(_rows_table(t, sides, *part))
        progress.add(len(part[0]))
    progress.close()


_SEQUENCE_SCHEMA = pa.schema([
    ("user_id", pa.int64()),
    ("item_seq", pa.list_(pa.int64())),
    ("rating_seq", pa.list_(pa.float32())),
    ("ts_seq", pa.list_(pa.int64())),
])


def _write_sequences(writer, t: _Timeline, chunk: int) -> None:
    """One row per user with interactions, in time order; rating_seq is NaN without ratings."""
    bounds = np.r_[t.starts, len(t.user)]
    rating = t.rating if t.rating is not None else np.full(len(t.user), np.nan, np.float32)
    for a in range(0, len(t.starts), chunk):
        b = min(a + chunk, len(t.starts))
        lo, hi = bounds[a], bounds[b]
        offsets = pa.array(bounds[a : b + 1] - lo, pa.int32())

        def seq(values, type_):
            return pa.ListArray.from_arrays(offsets, pa.array(values[lo:hi], type_))

        writer.write(pa.table({
            "user_id": pa.array(t.user[t.starts[a:b]], pa.int64()),
            "item_seq": seq(t.item, pa.int64()),
            "rating_seq": seq(rating, pa.float32()),
            "ts_seq": seq(t.ts, pa.int64()),
        }))


def _side_file(kind: str, vocab: Vocab, side: SideFeatures) -> pa.Table:
    """One row per known id (1..n): mapped features, raw values and, for items, text."""
    ids = np.arange(1, vocab.num_embeddings, dtype=np.int64)
    index = pa.array(ids)
    cols = {f"{kind}_id": index, f"raw_{kind}_id": pa.array(vocab.tokens(), pa.string())}
    cols.update(side.take(ids))
    cols.update({name: raw.take(index) for name, raw in side.raw.items()})
    if kind == "item":
        cols["text"] = side.text.take(index) if side.text is not None else pa.nulls(len(ids), pa.string())
    return pa.table(cols)
