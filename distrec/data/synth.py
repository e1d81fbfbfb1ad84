"""Synthetic click data in the same Parquet layout as real data, any size, bounded memory.

Ids follow a power law (a truncated Zipf), scrambled per field by a cheap bijection so each
field's popular ids differ. Labels are Bernoulli(sigmoid(logit)) where the logit sums a hidden
weight per (field, id) -- a hash of the id, so no table is stored whatever the vocabulary -- plus
a linear term in the dense features. That "world" (weights, scrambles) is fixed; ``cfg.seed``
only drives sampling, so train and validation sets written with different seeds share one
labelling function.

Besides the schema's columns each file carries ``row_id`` (the global row index), which lets
tests check that every row is read exactly once.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import yaml
from tqdm import tqdm

from distrec.config.schema import SynthConfig
from distrec.data.schema import FeatureSchema, SparseField
from distrec.errors import ConfigError
from distrec.storage import (
    atomic_parquet_writer,
    filesystem,
    full_url,
    write_text_atomic,
)

_WORLD_SEED = 20240611  # fixes hidden weights and id scrambles, independent of cfg.seed
_ID_WEIGHT_SCALE = 1.0
_DENSE_WEIGHT_SCALE = 0.5
_BIAS = -1.0


def feature_schema(cfg: SynthConfig, source: str = "<synth>") -> FeatureSchema:
    sparse = [SparseField("user_id", cfg.num_users)]
    sparse += [
        SparseField(f"c{i}", cfg.num_embeddings, multi_hot=i < cfg.multi_hot) for i in range(cfg.num_sparse)
    ]
    return FeatureSchema(
        sparse=tuple(sparse),
        dense=tuple(f"d{j}" for j in range(cfg.num_dense)),
        labels=("click",),
        binary_labels=("click",),
        group_key="user_id",
        source=source,
    )


def arrow_schema(cfg: SynthConfig) -> pa.Schema:
    fields = [pa.field("row_id", pa.int64()), pa.field("user_id", pa.int64())]
    for i in range(cfg.num_sparse):
        fields.append(pa.field(f"c{i}", pa.list_(pa.int64()) if i < cfg.multi_hot else pa.int64()))
    fields += [pa.field(f"d{j}", pa.float32()) for j in range(cfg.num_dense)]
    fields.append(pa.field("click", pa.int8()))
    return pa.schema(fields)


# --- the hidden world --------------------------------------------------------------------------


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hidden_weight(field_index: int, ids: np.ndarray) -> np.ndarray:
    """The true logit contribution of each id of a field, uniform in [-scale, scale)."""
    salt = np.uint64((field_index + 1) * 0x632BE59BD9B4E019 % 2**64)
    with np.errstate(over="ignore"):
        h = _splitmix64(ids.astype(np.uint64) ^ salt)
    u = (h >> np.uint64(11)).astype(np.float64) * 2.0**-53  # top 53 bits -> [0, 1)
    return (2.0 * u - 1.0) * _ID_WEIGHT_SCALE


class _Scramble:
    """id = (mult * rank + offset) mod n: a bijection on [0, n), so rank 0 (the most popular)
    lands on a different id in each field without storing a permutation."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n = n
        limit = max(2, min(n, 2**62 // n))  # keeps mult * rank inside int64
        mult = 1
        for _ in range(100):
            cand = int(rng.integers(1, limit)) | 1
            if math.gcd(cand, n) == 1:
                mult = cand
                break
        self.mult, self.offset = mult, int(rng.integers(0, n))

    def __call__(self, ranks: np.ndarray) -> np.ndarray:
        return (ranks * self.mult + self.offset) % self.n


def _zipf_ranks(rng: np.random.Generator, n: int, a: float, size: int) -> np.ndarray:
    """Ranks in [0, n) with P(rank) ~ (rank + 1)^-a: inverse CDF of a power law cut at n."""
    u = rng.random(size)
    if abs(a - 1.0) < 1e-9:
        x = np.power(n + 1.0, u)
    else:
        x = np.power(1.0 + u * ((n + 1.0) ** (1.0 - a) - 1.0), 1.0 / (1.0 - a))
    return np.minimum(x.astype(np.int64) - 1, n - 1)


class _World:
    def __init__(self, cfg: SynthConfig) -> None:
        rng = np.random.default_rng(_WORLD_SEED)
        self.user_scramble = _Scramble(cfg.num_users, rng)
        self.scrambles = [_Scramble(cfg.num_embeddings, rng) for _ in range(cfg.num_sparse)]
        self.dense_w = rng.normal(0.0, _DENSE_WEIGHT_SCALE, cfg.num_dense)


# --- generation --------------------------------------------------------------------------------


def _row_group(cfg: SynthConfig, world: _World, rng: np.random.Generator, first_row: int, n: int) -> pa.Table:
    cols: dict[str, pa.Array] = {"row_id": pa.array(np.arange(first_row, first_row + n, dtype=np.int64))}
    users = world.user_scramble(_zipf_ranks(rng, cfg.num_users, cfg.zipf_a, n))
    cols["user_id"] = pa.array(users)
    logit = hidden_weight(0, users)
    for i, scramble in enumerate(world.scrambles):
        if i < cfg.multi_hot:
            lengths = rng.integers(1, 6, n)
            offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
            ids = scramble(_zipf_ranks(rng, cfg.num_embeddings, cfg.zipf_a, int(offsets[-1])))
            logit += np.add.reduceat(hidden_weight(i + 1, ids), offsets[:-1]) / lengths
            cols[f"c{i}"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids))
        else:
            ids = scramble(_zipf_ranks(rng, cfg.num_embeddings, cfg.zipf_a, n))
            logit += hidden_weight(i + 1, ids)
            cols[f"c{i}"] = pa.array(ids)
    dense = rng.standard_normal((n, cfg.num_dense), dtype=np.float32)
    logit += dense.astype(np.float64) @ world.dense_w + _BIAS
    for j in range(cfg.num_dense):
        cols[f"d{j}"] = pa.array(dense[:, j])
    click = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    cols["click"] = pa.array(click.astype(np.int8))
    return pa.table(cols, schema=arrow_schema(cfg))


def _check(cfg: SynthConfig) -> None:
    for name in ("rows", "rows_per_file", "rows_per_row_group", "num_sparse", "num_embeddings", "num_users"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"synth.{name} must be > 0, got {getattr(cfg, name)}")
    if not 0 <= cfg.multi_hot <= cfg.num_sparse:
        raise ConfigError(f"synth.multi_hot must be in [0, num_sparse={cfg.num_sparse}], got {cfg.multi_hot}")
    if cfg.num_dense < 0 or cfg.zipf_a <= 0:
        raise ConfigError("synth.num_dense must be >= 0 and synth.zipf_a > 0")


def write_synthetic(
    out_dir: str, cfg: SynthConfig, s3_endpoint_url: str | None = None, progress: bool = True
) -> FeatureSchema:
    """Write ``out_dir/part-NNNNN.parquet`` files and ``out_dir/schema.yaml`` (last)."""
    _check(cfg)
    fs, base = filesystem(out_dir, s3_endpoint_url)
    base = base.rstrip("/")
    world = _World(cfg)
    table_schema = arrow_schema(cfg)
    num_files = math.ceil(cfg.rows / cfg.rows_per_file)
    with tqdm(total=cfg.rows, unit="rows", unit_scale=True, disable=not progress, desc="synth") as bar:
        for k in range(num_files):
            first = k * cfg.rows_per_file
            file_rows = min(cfg.rows_per_file, cfg.rows - first)
            with atomic_parquet_writer(f"{base}/part-{k:05d}.parquet", table_schema, fs) as writer:
                for g, start in enumerate(range(0, file_rows, cfg.rows_per_row_group)):
                    n = min(cfg.rows_per_row_group, file_rows - start)
                    rng = np.random.default_rng([cfg.seed, k, g])
                    writer.write_table(_row_group(cfg, world, rng, first + start, n), row_group_size=n)
                    bar.update(n)
    schema_path = f"{base}/schema.yaml"
    schema = feature_schema(cfg, source=full_url(fs, schema_path))
    write_text_atomic(schema_path, yaml.safe_dump(schema.to_dict(), sort_keys=False), fs)
    return schema
