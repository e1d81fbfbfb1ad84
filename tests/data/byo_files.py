"""Small files in the public layouts users bring (written by the tests, in tmp_path)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TABLE_HEADER = ["user_id", "item_id", "cate_id", "city", "price", "age", "hist_items", "click", "conversion", "ts"]


def yoochoose_clicks(path, sessions: int = 60, seed: int = 0):
    """YooChoose ``yoochoose-clicks.dat``: session,timestamp,item,category; no header."""
    rng = np.random.default_rng(seed)
    lines = []
    for s in range(1, sessions + 1):
        t = dt.datetime(2014, 4, 7, 10) + dt.timedelta(hours=s)
        for _ in range(int(rng.integers(1, 9))):
            t += dt.timedelta(seconds=int(rng.integers(5, 300)))
            lines.append(f"{s},{t.isoformat(timespec='milliseconds')}Z,{214536500 + int(rng.integers(0, 30))},0")
    path.write_text("\n".join(lines) + "\n")
    return path


def diginetica_views(path, sessions: int = 60, seed: int = 1):
    """Diginetica ``train-item-views.csv``: sessionId;userId;itemId;timeframe;eventdate with a header."""
    rng = np.random.default_rng(seed)
    lines = ["sessionId;userId;itemId;timeframe;eventdate"]
    for s in range(1, sessions + 1):
        for _ in range(int(rng.integers(1, 9))):
            lines.append(f"{s};NA;{int(rng.integers(1, 40))};{int(rng.integers(0, 10**6))};"
                         f"2016-05-{int(rng.integers(1, 30)):02d}")
    path.write_text("\n".join(lines) + "\n")
    return path


def click_table_rows(n: int, seed: int = 0, first_ts: int = 1_600_000_000) -> list[list[str]]:
    """FuxiCTR/DeepCTR-like rows: string categoricals, numbers (some empty), a ``^`` sequence, click
    and conversion (a conversion only after a click), a timestamp. Clicks follow the item's parity."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        item = int(rng.integers(0, 60))
        click = int(rng.random() < (0.6 if item % 2 else 0.1))
        rows.append([
            f"u{int(rng.integers(0, 40))}", f"i{item}", f"c{item % 7}",
            "" if rng.random() < 0.05 else f"city{int(rng.integers(0, 20))}",
            "" if rng.random() < 0.1 else f"{rng.random() * 100:.2f}", str(int(rng.integers(15, 70))),
            "^".join(f"i{x}" for x in rng.integers(0, 60, int(rng.integers(0, 12)))),
            str(click), str(int(click and rng.random() < 0.3)), str(first_ts + 60 * i),
        ])
    return rows


def write_delimited(path, rows: list[list[str]], delimiter: str = ",", header: bool = True):
    lines = ([delimiter.join(TABLE_HEADER)] if header else []) + [delimiter.join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_parquet(path, rows: list[list[str]]):
    columns = {name: [r[i] for r in rows] for i, name in enumerate(TABLE_HEADER)}
    table = pa.table({
        **{k: columns[k] for k in ("user_id", "item_id", "cate_id", "hist_items")},
        "city": pa.array([v or None for v in columns["city"]], pa.string()),
        "price": pa.array([float(v) if v else None for v in columns["price"]], pa.float64()),
        "age": pa.array([int(v) for v in columns["age"]], pa.int64()),
        "click": pa.array([int(v) for v in columns["click"]], pa.int8()),
        "conversion": pa.array([int(v) for v in columns["conversion"]], pa.int8()),
        "ts": pa.array([int(v) for v in columns["ts"]], pa.int64()),
    })
    pq.write_table(table, path)
    return path


SPEC = """
columns:
  user_id:    {type: categorical, min_count: 2}
  item_id:    {type: categorical}
  cate_id:    {type: categorical, hash_buckets: 16}
  city:       {type: categorical}
  price:      {type: numeric, fill: mean, normalize: standard}
  age:        {type: numeric, bucketize: [25, 40, 55]}
  hist_items: {type: sequence, separator: "^", max_len: 8, share: item_id}
  click:      {type: label}
  conversion: {type: label}
  ts:         {type: timestamp}
group_key: user_id
"""


def write_spec(path, split: str = "{by: random, fractions: [0.8, 0.1, 0.1], seed: 0}", extra: str = ""):
    path.write_text(SPEC + f"split: {split}\n" + extra)
    return path
