"""MovieLens-100K (RecBole atomic files) -> the five Conure tasks, one dataset directory each:

  t1_next_item   next item over each user's rating sequence (time order): train holds the
                 sequence without its last two items, valid without its last, test all of it
  t2_liked_item  item_rec: the next item the user rated >= ``like_threshold``; source = the items
                 before it; train users give a row per liked item, valid/test users their last
  t3_gender      profile: M -> 0, F -> 1
  t4_age         profile: age band (MovieLens-1M bands <18, 18-24, 25-34, 35-44, 45-49, 50-55,
                 56+; ours)
  t5_occupation  profile: occupation, classes in alphabetical order

T2-T5 split users into train/valid/test (seeded, ``valid_share``/``test_share``). Item ids are
1..n in order of first appearance in the .inter file (0 is padding); T2's targets use the same
ids in a table of their own.
"""

from __future__ import annotations

import posixpath

import numpy as np
import pyarrow as pa

from distrec.data.importers.atomic_files import atomic_batches, find_atomic_files, read_header
from distrec.data.importers.common import Vocab, numbers, require_columns
from distrec.data.importers.conure_common import split_of_users, write_task
from distrec.data.schema import FeatureSchema
from distrec.errors import DataError

TASKS = ("t1_next_item", "t2_liked_item", "t3_gender", "t4_age", "t5_occupation")
AGE_BANDS = (18, 25, 35, 45, 50, 56)  # band i: ages in [AGE_BANDS[i-1], AGE_BANDS[i])


def age_band(age: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(AGE_BANDS), age, side="right")


def import_conure_ml100k(src: str, out: str, *, max_len: int = 50, like_threshold: float = 4.0,
                         valid_share: float = 0.1, test_share: float = 0.1, seed: int = 0,
                         overwrite: bool = False) -> FeatureSchema:
    """Write ``out/<task>/`` for every task in TASKS; returns T1's schema."""
    files = find_atomic_files(src)
    if files.user is None:
        raise DataError(f"{src}: the .user file (gender, age, occupation labels) is missing")
    user_ids, items, ratings = _read_inter(files.inter)
    profiles = _read_users(files.user)

    order = np.lexsort((np.arange(len(user_ids)), _times(files.inter), user_ids))
    user_ids, items, ratings = user_ids[order], items[order], ratings[order]
    starts = np.flatnonzero(np.r_[True, user_ids[1:] != user_ids[:-1]])
    ends = np.r_[starts[1:], len(user_ids)]
    users = [str(u) for u in user_ids[starts]]
    seqs = [items[a:b] for a, b in zip(starts, ends)]
    liked = [ratings[a:b] >= like_threshold for a, b in zip(starts, ends)]
    missing = [u for u in users if u not in profiles]
    if missing:
        raise DataError(f"{files.user}: user_id {missing[0]!r} of {files.inter} has no row "
                        f"({len(missing)} users missing); every user needs gender, age and occupation")
    num_items = int(items.max()) + 1
    split = split_of_users(len(users), valid_share, test_share, seed)

    t1 = write_task(posixpath.join(out, TASKS[0]), "next_item", {
        "train": ([s[:-2] for s in seqs if len(s) >= 4], None),
        "valid": ([s[:-1] for s in seqs if len(s) >= 3], None),
        "test": ([s for s in seqs if len(s) >= 2], None),
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
    write_task(posixpath.join(out, TASKS[1]), "item_rec", t2, num_items, num_items, max_len, overwrite,
               like_threshold=like_threshold)

    for task, column, encode in (("t3_gender", "gender", _gender), ("t4_age", "age", _age),
                                 ("t5_occupation", "occupation", _occupation)):
        labels, classes = encode([profiles[u][column] for u in users], files.user)
        parts = {name: ([s for s, p in zip(seqs, split) if p == i], labels[split == i])
                 for i, name in enumerate(("train", "valid", "test"))}
        write_task(posixpath.join(out, task), "profile", parts, num_items, len(classes), max_len,
                   overwrite, classes=classes)
    return t1


def _read_inter(path: str):
    header = read_header(path)
    require_columns(path, [c for c, _ in header], ["user_id", "item_id", "rating", "timestamp"])
    vocab, users, items, ratings = Vocab(), [], [], []
    line = 2
    for batch in atomic_batches(path, header, ["user_id", "item_id", "rating"], {"rating": pa.float64()}):
        vocab.add(batch.column("item_id"))
        users.append(batch.column("user_id").to_numpy(zero_copy_only=False).astype(str))
        items.append(vocab.encode(batch.column("item_id")))
        ratings.append(numbers(batch, "rating", path, line))
        line += batch.num_rows
    if not users:
        raise DataError(f"{path}: no interactions")
    return np.concatenate(users), np.concatenate(items), np.concatenate(ratings)


def _times(path: str) -> np.ndarray:
    header = read_header(path)
    parts, line = [], 2
    for batch in atomic_batches(path, header, ["timestamp"], {"timestamp": pa.float64()}):
        parts.append(numbers(batch, "timestamp", path, line, dtype=np.float64))
        line += batch.num_rows
    return np.concatenate(parts)


def _read_users(path: str) -> dict[str, dict]:
    header = read_header(path)
    require_columns(path, [c for c, _ in header], ["user_id", "age", "gender", "occupation"])
    out = {}
    for batch in atomic_batches(path, header, ["user_id", "age", "gender", "occupation"]):
        for row in batch.to_pylist():
            out[str(row["user_id"])] = row
    return out


def _gender(values: list, source: str):
    codes = {"M": 0, "F": 1}
    bad = [v for v in values if v not in codes]
    if bad:
        raise DataError(f"{source}: column 'gender' has value {bad[0]!r}; expected M or F")
    return np.array([codes[v] for v in values]), ["M", "F"]


def _age(values: list, source: str):
    try:
        ages = np.array([int(v) for v in values])
    except (TypeError, ValueError):
        raise DataError(f"{source}: column 'age' must hold whole numbers of years") from None
    return age_band(ages), ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]


def _occupation(values: list, source: str):
    if any(v is None for v in values):
        raise DataError(f"{source}: column 'occupation' is empty for some user")
    classes = sorted(set(values))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in values]), classes
