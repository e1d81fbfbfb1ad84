"""A RecBole atomic dataset (ml-100k, ml-1m, Amazon, ...) -> Conure tasks, one dataset directory each:

  t1_next_item   next item over each user's interaction sequence (time order): train holds the
                 sequence without its last two items, valid without its last, test all of it
  t2_liked_item  item_rec: the next item the user rated >= ``like_threshold`` (every item when the
                 .inter has no rating column); source = the items before it; train users give a
                 row per liked item, valid/test users their last
  t<k>_<column>  profile: one task per column of ``profiles`` (default gender, age, occupation:
                 MovieLens' T3-T5), numbered from 3 in that order. gender M/F -> 0/1; age in whole
                 years -> band (MovieLens-1M bands <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+;
                 ours; ml-1m's age codes 1, 18, 25, ... fall into the same bands); any other column
                 (or a gender/age column with other values): classes in sorted order

``profiles=""`` (or a dataset without a ``.user`` file, which needs it) imports T1 and T2 only.
Profile tasks split users into train/valid/test (seeded, ``valid_share``/``test_share``), as does
T2. Item ids are 1..n in order of first appearance in the .inter file (0 is padding); T2's
targets use the same ids in a table of their own. Without a timestamp column the file order is
the time order. The .inter columns are held as arrays because each user's sequence needs the
whole timeline: ~210 bytes of peak memory per interaction (benchmarks/import_path.py).
"""

from __future__ import annotations

import posixpath

import numpy as np
import pyarrow as pa

from distrec.data.importers.atomic_files import (
    atomic_batches,
    find_atomic_files,
    read_header,
)
from distrec.data.importers.common import Vocab, numbers, require_columns
from distrec.data.schema import FeatureSchema
from distrec.errors import DataError
from distrec.methods.conure.importers.common import (
    NEXT_ITEM_DROP,
    split_of_users,
    write_task,
)

DEFAULT_PROFILES = ("gender", "age", "occupation")
AGE_BANDS = (18, 25, 35, 45, 50, 56)  # band i: ages in [AGE_BANDS[i-1], AGE_BANDS[i])
AGE_CLASSES = ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]


def age_band(age: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(AGE_BANDS), age, side="right")


def task_names(profiles) -> list[str]:
    return ["t1_next_item", "t2_liked_item", *(f"t{3 + i}_{c}" for i, c in enumerate(_profile_list(profiles)))]


def import_conure_recbole(src: str, out: str, *, max_len: int = 50, like_threshold: float = 4.0,
                          profiles=DEFAULT_PROFILES, valid_share: float = 0.1, test_share: float = 0.1,
                          seed: int = 0, overwrite: bool = False) -> FeatureSchema:
    """Write ``out/<task>/`` for every task of ``task_names(profiles)``; returns T1's schema.
    ``profiles``: column names of the .user file, a sequence or a comma-separated string."""
    files = find_atomic_files(src)
    columns = _profile_list(profiles)
    if columns and files.user is None:
        raise DataError(f"{src}: the .user file is missing; the profile tasks {columns} need it "
                        "(pass profiles='' to import only T1 and T2)")
    user_ids, items, ratings, times = _read_inter(files.inter)
    order = np.lexsort((np.arange(len(user_ids)), times, user_ids))
    user_ids, items, ratings = user_ids[order], items[order], ratings[order]
    starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]])
    ends = np.r_[starts[1:], len(user_ids)]
    users = [str(u) for u in user_ids[starts]]
    seqs = [items[a:b] for a, b in zip(starts, ends)]
    liked = [~(ratings[a:b] < like_threshold) for a, b in zip(starts, ends)]  # NaN (no rating): liked
    num_items = int(items.max()) + 1
    split = split_of_users(len(users), valid_share, test_share, seed)
    profile_labels = _profile_labels(files, users, columns)  # checked before anything is written

    t1 = write_task(posixpath.join(out, "t1_next_item"), "next_item", {
        name: ([s[:len(s) - drop] for s in seqs if len(s) - drop >= 2], None)
        for name, drop in NEXT_ITEM_DROP.items()
    }, num_items, num_items, max_len, overwrite)

    t2 = {name: ([], []) for name in ("train", "valid", "test")}
    for s, like, part in zip(seqs, liked, split):
        positions = np.flatnonzero(like[1:]) + 1  # liked items with at least one item before
        if part != 0:
            positions = positions[-1:]
        rows = t2[("train", "valid", "test")[part]]
        for p in positions:
            rows[0].append(s[:p])
            rows[1].append(s[p])
    write_task(posixpath.join(out, "t2_liked_item"), "item_rec", t2, num_items, num_items, max_len, overwrite,
               like_threshold=like_threshold)

    for task, (labels, classes) in profile_labels.items():
        parts = {name: ([s for s, p in zip(seqs, split) if p == i], labels[split == i])
                 for i, name in enumerate(("train", "valid", "test"))}
        write_task(posixpath.join(out, task), "profile", parts, num_items, len(classes), max_len,
                   overwrite, classes=classes)
    return t1


def _profile_labels(files, users: list[str], columns: list[str]) -> dict[str, tuple[np.ndarray, list]]:
    """task name -> (label per user, class names)."""
    if not columns:
        return {}
    profiles_by_user = _read_users(files.user, columns)
    missing = [u for u in users if u not in profiles_by_user]
    if missing:
        raise DataError(f"{files.user}: user_id {missing[0]!r} of {files.inter} has no row "
                        f"({len(missing)} users missing); every user needs {', '.join(columns)}")
    return {task: _encode(column, [profiles_by_user[u][column] for u in users], files.user)
            for task, column in zip(task_names(columns)[2:], columns)}


def _profile_list(profiles) -> list[str]:
    if profiles is None:
        return []
    if isinstance(profiles, str):
        profiles = profiles.split(",")
    return [c.strip() for c in profiles if c and c.strip()]


def _read_inter(path: str):
    """(user ids as text, item ids, ratings, times) per interaction in file order; ratings NaN
    without a rating column, times 0 without a timestamp (the sort's row key keeps file order)."""
    header = read_header(path)
    names = [c for c, _ in header]
    require_columns(path, names, ["user_id", "item_id"])
    optional = [c for c in ("rating", "timestamp") if c in names]
    vocab, users, items = Vocab(), [], []
    values: dict[str, list[np.ndarray]] = {"rating": [], "timestamp": []}
    line = 2
    for batch in atomic_batches(path, header, ["user_id", "item_id", *optional],
                                {c: pa.float64() for c in optional}):
        vocab.add(batch.column("item_id"))
        users.append(batch.column("user_id").to_numpy(zero_copy_only=False).astype(str))
        items.append(vocab.encode(batch.column("item_id")))
        values["rating"].append(numbers(batch, "rating", path, line) if "rating" in optional
                                else np.full(batch.num_rows, np.nan))
        values["timestamp"].append(numbers(batch, "timestamp", path, line, dtype=np.float64)
                                   if "timestamp" in optional else np.zeros(batch.num_rows))
        line += batch.num_rows
    if not users:
        raise DataError(f"{path}: no interactions")
    return (np.concatenate(users), np.concatenate(items), np.concatenate(values["rating"]),
            np.concatenate(values["timestamp"]))


def _read_users(path: str, columns: list[str]) -> dict[str, dict]:
    header = read_header(path)
    require_columns(path, [c for c, _ in header], ["user_id", *columns])
    out = {}
    for batch in atomic_batches(path, header, ["user_id", *columns]):
        for row in batch.to_pylist():
            out[str(row["user_id"])] = row
    return out


def _encode(column: str, values: list, source: str) -> tuple[np.ndarray, list]:
    """(labels 0..C-1, class names) of one profile column."""
    empty = sum(v is None or str(v).strip() == "" for v in values)
    if empty:
        raise DataError(f"{source}: column '{column}' is empty for {empty} user(s); a profile task "
                        "needs a label for every user")
    text = [str(v) for v in values]
    if column == "gender" and set(text) <= {"M", "F"}:
        return np.array([{"M": 0, "F": 1}[v] for v in text]), ["M", "F"]
    if column == "age" and all(v.isdigit() for v in text):
        return age_band(np.array([int(v) for v in text])), AGE_CLASSES
    classes = sorted(set(text))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in text]), classes
