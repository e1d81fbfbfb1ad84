"""``distrec data inspect``: what a user checks before training, read from Parquet in one streamed pass.

Per dataset: files, row groups, rows. Per column: type, null share, distinct values (exact up to
DISTINCT_EXACT of them; above that a K-minimum-values estimate over 64-bit hashes, about
1/sqrt(DISTINCT_EXACT) = 1.6 % relative error, marked ``~``), min/max/mean of numbers (the mean of
a 0/1 label is its rate), and for list columns (sequences, multi-hot) the length quantiles (from a
sample of at most SAMPLE_SIZE lengths). With a schema, each column's role and table size, and the
id columns whose largest id does not fit their table. Memory: a fixed-size sketch and sample per
column, one record batch at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distrec.data.schema import FeatureSchema
from distrec.storage import filesystem, list_parquet_files

DISTINCT_EXACT = 4096
SAMPLE_SIZE = 100_000
QUANTILES = (0.5, 0.9, 0.99)


class _DistinctSketch:
    """The DISTINCT_EXACT smallest distinct 64-bit hashes: exact below that many, else an estimate."""

    def __init__(self) -> None:
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.saturated = False

    def add(self, values: pa.Array) -> None:
        values = values.drop_null()
        if not len(values):
            return
        raw = pc.unique(values).to_numpy(zero_copy_only=False)
        if raw.dtype == object or raw.dtype.kind in "US":
            raw = raw.astype(object, copy=False)
        merged = np.union1d(self.hashes, pd.util.hash_array(raw, categorize=False))
        self.saturated = self.saturated or len(merged) > DISTINCT_EXACT
        self.hashes = merged[:DISTINCT_EXACT]

    def count(self) -> tuple[int, bool]:
        """(distinct values, whether estimated)."""
        if not self.saturated:
            return len(self.hashes), False
        kth = float(self.hashes[-1]) / 2.0**64
        return round((DISTINCT_EXACT - 1) / kth), True


@dataclass
class ColumnReport:
    name: str
    type: str
    role: str = ""
    rows: int = 0
    nulls: int = 0
    distinct: int = 0
    distinct_estimated: bool = False
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    length_quantiles: dict[str, float] | None = None
    num_embeddings: int | None = None
    problem: str | None = None
    _sketch: _DistinctSketch = field(default_factory=_DistinctSketch, repr=False)
    _sum: float = field(default=0.0, repr=False)
    _count: int = field(default=0, repr=False)
    _lengths: list = field(default_factory=list, repr=False)
    _lengths_seen: int = field(default=0, repr=False)

    def add(self, arr: pa.Array, rng: np.random.Generator) -> None:
        self.rows += len(arr)
        self.nulls += arr.null_count
        if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            lengths = pc.list_value_length(arr).drop_null().to_numpy(zero_copy_only=False)
            self._sample_lengths(lengths, rng)
            arr = pc.list_flatten(arr)
        self._sketch.add(arr)
        if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type):
            x = arr.drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
            if len(x):
                self.min = float(x.min()) if self.min is None else min(self.min, float(x.min()))
                self.max = float(x.max()) if self.max is None else max(self.max, float(x.max()))
                self._sum += float(x.sum())
                self._count += len(x)

    def _sample_lengths(self, lengths: np.ndarray, rng: np.random.Generator) -> None:
        self._lengths_seen += len(lengths)
        self._lengths.append(lengths)
        kept = sum(len(x) for x in self._lengths)
        if kept > SAMPLE_SIZE:  # thin to a uniform sample: each length kept with the same chance
            pooled = np.concatenate(self._lengths)
            self._lengths = [rng.choice(pooled, SAMPLE_SIZE, replace=False)]

    def finish(self) -> None:
        self.distinct, self.distinct_estimated = self._sketch.count()
        if self._count:
            self.mean = self._sum / self._count
        if self._lengths:
            pooled = np.concatenate(self._lengths)
            if len(pooled):
                self.length_quantiles = {f"p{round(q * 100)}": float(np.quantile(pooled, q)) for q in QUANTILES}
                self.length_quantiles["max"] = float(pooled.max())
        if self.num_embeddings is not None and self.max is not None and self.max >= self.num_embeddings \
                and self.role != "sparse (hashed)":
            self.problem = f"largest id {int(self.max)} >= num_embeddings {self.num_embeddings}"

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")} | {
            "null_share": self.nulls / self.rows if self.rows else 0.0}


def inspect_parquet(path: str, schema: FeatureSchema | None = None, seed: int = 0) -> dict:
    """The report of the Parquet files at ``path`` (a file, a directory or a glob)."""
    files = list_parquet_files(path)
    rng = np.random.default_rng(seed)
    columns: dict[str, ColumnReport] = {}
    row_groups = rows = 0
    roles = _roles(schema) if schema else {}
    for file in files:
        fs, fs_path = filesystem(file)
        with fs.open(fs_path, "rb") as fh:
            pf = pq.ParquetFile(fh)
            row_groups += pf.metadata.num_row_groups
            rows += pf.metadata.num_rows
            for name in pf.schema_arrow.names:
                if name not in columns:
                    role, size = roles.get(name, ("", None))
                    columns[name] = ColumnReport(name, str(pf.schema_arrow.field(name).type), role, num_embeddings=size)
            for batch in pf.iter_batches(batch_size=65536):
                for name in batch.schema.names:
                    columns[name].add(batch.column(name), rng)
    for c in columns.values():
        c.finish()
    report = {"path": path, "files": len(files), "row_groups": row_groups, "rows": rows,
              "columns": [c.as_dict() for c in columns.values()],
              "distinct_note": f"exact up to {DISTINCT_EXACT} distinct values; above, a KMV estimate (~1.6 %)"}
    if schema:
        missing = [c for c in schema.columns if c not in columns]
        report["schema"] = schema.source
        report["missing_columns"] = missing
        report["label_rates"] = {n: columns[n].mean for n in schema.labels if n in columns}
        report["problems"] = [f"{c.name}: {c.problem}" for c in columns.values() if c.problem] + \
                             [f"column '{m}' of the schema is missing" for m in missing]
    return report


def _roles(schema: FeatureSchema) -> dict[str, tuple[str, int | None]]:
    roles: dict[str, tuple[str, int | None]] = {}
    for f in schema.sparse:
        kind = "sparse (hashed)" if f.hash else "sparse (multi-hot)" if f.multi_hot else "sparse"
        roles[f.name] = (kind, f.num_embeddings)
    sizes = {t.name: t.num_embeddings for t in schema.tables()}
    for s in schema.sequence:
        roles[s.name] = (f"sequence (max_len {s.max_len})", sizes[schema.table_of(s.name)])
    roles.update({d: ("dense", None) for d in schema.dense})
    roles.update({label: ("label", None) for label in schema.labels})
    if schema.group_key:
        roles[schema.group_key] = ("group key", None)
    return roles


def format_report(report: dict) -> str:
    """The report as a text table."""
    title = (f"{report['path']}: {report['rows']:,} rows in {report['files']} file(s), "
             f"{report['row_groups']} row group(s)")
    lines = [title]
    header = ["column", "type", "role", "null %", "distinct", "min", "max", "mean", "length p50/p90/p99/max"]
    table = [header]
    for c in report["columns"]:
        lq = c["length_quantiles"]
        table.append([
            c["name"], c["type"], c["role"] + (f" [{c['num_embeddings']}]" if c["num_embeddings"] else ""),
            f"{100 * c['null_share']:.1f}", ("~" if c["distinct_estimated"] else "") + f"{c['distinct']:,}",
            _number(c["min"]), _number(c["max"]), _number(c["mean"]),
            "/".join(_number(v) for v in lq.values()) if lq else "",
        ])
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in table]
    lines.append(f"distinct: {report['distinct_note']}")
    if "label_rates" in report:
        rates = ", ".join(f"{k} {v:.4f}" for k, v in report["label_rates"].items() if v is not None)
        lines.append(f"label rates: {rates or '-'}")
        lines += [f"problem: {p}" for p in report["problems"]] or ["problems: none"]
    return "\n".join(lines)


def _number(v) -> str:
    if v is None:
        return ""
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.4g}" if math.isfinite(v) else str(v)
