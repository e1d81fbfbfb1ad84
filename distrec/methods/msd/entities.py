"""Items and users as MSD sees them: the raw input the student reads, the fields the teacher's
prompt and the metadata teacher use, and how often each item occurs in the training data.

Built from the recbole importer's outputs: ``items.parquet`` (``text`` = "title | year | genres"
and ``raw_*`` columns), ``users.parquet`` (``raw_*`` demographics) and ``sequences/`` (each
user's items, ratings and times). A user's history keeps only interactions at or before the
last timestamp of ``data.train`` and rated >= ``like_threshold``: no validation or test
behaviour leaks into knowledge, distillation or the CTR model's user input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distrec.errors import DataError
from distrec.methods.msd.config import Level
from distrec.storage import list_parquet_files

LEVELS = Level.values()
_HIDDEN_USER_FIELDS = {"raw_user_id", "raw_zip_code"}  # ids and postcodes say nothing to a reader


@dataclass(frozen=True)
class Entity:
    level: str  # item | user
    id: int
    raw: str  # the student's input
    fields: dict  # prompt fields (strings), e.g. title/year/genres, age/gender/occupation/history


def _read(path: str, columns: list[str] | None = None) -> pa.Table:
    files = list_parquet_files(path)
    if not files:
        raise DataError(f"no Parquet files at {path}")
    try:
        tables = [pq.read_table(f, columns=columns) for f in files]
    except (KeyError, pa.ArrowInvalid) as exc:
        raise DataError(f"{path}: cannot read columns {columns}: {exc}") from None
    return pa.concat_tables(tables)


def _require(table: pa.Table, path: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected the recbole importer's "
                        f"layout with {columns} (see distrec/data/importers/recbole.py)")


def train_cutoff(train_path: str) -> int:
    """The last interaction time in the training split."""
    table = _read(train_path, ["timestamp"])
    if table.num_rows == 0:
        raise DataError(f"{train_path}: no rows")
    return int(pc.max(table.column("timestamp")).as_py())


def id_frequencies(train_path: str, column: str, size: int) -> np.ndarray:
    """How many training rows name each id of ``column`` (index = id, ``size`` entries)."""
    ids = _read(train_path, [column]).column(column).to_numpy()
    return np.bincount(ids, minlength=size)[:size]


ROLE_HINTS = {"title": ("title", "name"), "year": ("year", "date"), "genres": ("class", "genre", "categor", "tag")}


def item_columns(table: pa.Table, items_path: str, configured=None) -> dict[str, str | None]:
    """Prompt role (title, year, genres) -> raw column name (``raw_`` dropped) or None: the
    configured name (``method.entities.item_columns``) or the first column with a hint."""
    raw = [c[4:] for c in table.column_names if c.startswith("raw_") and c != "raw_item_id"]
    roles: dict[str, str | None] = {}
    for role, hints in ROLE_HINTS.items():
        chosen = getattr(configured, role, None) if configured is not None else None
        if chosen is not None and chosen not in raw:
            raise DataError(f"{items_path}: method.entities.item_columns.{role}={chosen!r} is not a "
                            f"column of the items; raw columns: {raw}")
        taken = set(roles.values())
        roles[role] = chosen or next((c for c in raw if c not in taken
                                      and any(h in c.lower() for h in hints)), None)
    return roles


def _text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _item_fields(row: dict, roles: dict[str, str | None], list_columns: set[str]) -> dict:
    text = row.get("text") or ""
    if not any(roles.values()):  # no raw columns: the importer's "a | b | c" text
        parts = [p.strip() for p in text.split("|")]
        title, year, genres = (parts + ["", "", ""])[:3]
        return {"title": title, "year": year, "genres": genres, "attributes": "", "text": text}
    fields = {role: _text(row.get(f"raw_{column}")) if column else "" for role, column in roles.items()}
    if roles["genres"] in list_columns:  # a token_seq column: its raw value is space-separated tokens
        fields["genres"] = ", ".join(fields["genres"].split())
    used = {f"raw_{c}" for c in roles.values() if c} | {"raw_item_id"}
    fields["attributes"] = "; ".join(f"{k[4:].replace('_', ' ')}: {_text(v)}" for k, v in row.items()
                                     if k.startswith("raw_") and k not in used and _text(v))
    return {**fields, "text": text}


def load_items(items_path: str, configured_columns=None) -> dict[int, Entity]:
    table = _read(items_path)
    _require(table, items_path, ["item_id", "text"])
    roles = item_columns(table, items_path, configured_columns)
    list_columns = {name for name in table.column_names if pa.types.is_list(table.schema.field(name).type)}
    out = {}
    for row in table.to_pylist():
        item_id = int(row["item_id"])
        fields = _item_fields(row, roles, list_columns)
        out[item_id] = Entity("item", item_id, fields["text"], fields)
    return out


def liked_histories(sequences_path: str, cutoff: int, like_threshold: float) -> dict[int, list[int]]:
    """user id -> liked item ids up to ``cutoff``, oldest first."""
    table = _read(sequences_path)
    _require(table, sequences_path, ["user_id", "item_seq", "rating_seq", "ts_seq"])
    out = {}
    for row in table.to_pylist():
        items = np.asarray(row["item_seq"], dtype=np.int64)
        ratings = np.asarray(row["rating_seq"], dtype=np.float64)
        ts = np.asarray(row["ts_seq"], dtype=np.int64)
        keep = (ts <= cutoff) & ~(ratings < like_threshold)  # NaN rating (implicit data): a like
        out[int(row["user_id"])] = items[keep].tolist()
    return out


def load_users(users_path: str, histories: dict[int, list[int]], items: dict[int, Entity],
               history_items: int) -> dict[int, Entity]:
    table = _read(users_path)
    _require(table, users_path, ["user_id"])
    out = {}
    for row in table.to_pylist():
        user_id = int(row["user_id"])
        profile = {k[4:]: str(v) for k, v in row.items()
                   if k.startswith("raw_") and k not in _HIDDEN_USER_FIELDS and v is not None}
        recent = [items[i] for i in histories.get(user_id, [])[-history_items:] if i in items]
        titles = "; ".join(f"{e.fields['title']} ({e.fields['year']})" for e in recent) or "nothing yet"
        genre_counts: dict[str, int] = {}
        for item_id in histories.get(user_id, []):
            if item_id in items:
                for g in items[item_id].fields["genres"].split(", "):
                    if g:
                        genre_counts[g] = genre_counts.get(g, 0) + 1
        top = sorted(genre_counts, key=lambda g: (-genre_counts[g], g))[:3]
        fields = {**profile, "history": titles, "top_genres": ", ".join(top),
                  "profile": ", ".join(f"{k} {v}" for k, v in profile.items()) or "no profile data"}
        raw = f"{fields['profile']} | liked: {titles}"
        out[user_id] = Entity("user", user_id, raw, fields)
    return out


@dataclass
class EntityCatalog:
    items: dict[int, Entity]
    users: dict[int, Entity]

    def level(self, level: str) -> dict[int, Entity]:
        if level not in LEVELS:
            raise DataError(f"unknown entity level {level!r}; expected one of {list(LEVELS)}")
        return self.items if level == "item" else self.users


def load_catalog(entities_cfg, train_path: str) -> EntityCatalog:
    """Every item and user with its raw input and prompt fields (``method.entities``)."""
    items = load_items(entities_cfg.items_path, entities_cfg.get("item_columns"))
    histories = liked_histories(entities_cfg.sequences_path, train_cutoff(train_path), entities_cfg.like_threshold)
    users = load_users(entities_cfg.users_path, histories, items, entities_cfg.history_items)
    return EntityCatalog(items, users)
