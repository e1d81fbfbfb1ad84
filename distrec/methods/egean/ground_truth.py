"""Impressions with a known conversion probability, for measuring CVR bias over the exposure space.

Every impression (user, item, item category, context, dense features) gets

    conversion drivers  v = s · (b_user + b_item + b_category + b_context + w_v · x)
    true CVR            q = sigmoid(cvr_bias + v)
    true CTR            c = sigmoid(ctr_bias + shift · v + a_user + a_item + a_context + w_c · x)

then click ~ Bernoulli(c), cvr_draw ~ Bernoulli(q) (what would happen if clicked) and
purchase = click · cvr_draw. Clicks are selected by the same features that drive conversion, so
the clicked space over-represents impressions that convert well: ``shift`` is the strength of
that covariate shift (0: clicks ignore the conversion drivers); s is ``driver_scale``. Conversion depends on the
features only, so an estimator that reweights the clicked space correctly can be unbiased.

The hidden per-id effects are hashes of the id (``distrec.data.synth.hidden_weight``): no table is
stored, memory is one row group whatever the size, and the world does not depend on ``seed``.

Layout: ``<dir>/part-NNNNN.parquet`` per split and a ``schema.yaml`` whose labels are
``[click, purchase, true_cvr, cvr_draw]``; files also carry ``row_id`` and ``true_ctr``.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pyarrow as pa
import yaml
from tqdm import tqdm

from distrec.data.schema import FeatureSchema, SparseField
from distrec.data.synth import _Scramble, _zipf_ranks, hidden_weight
from distrec.errors import ConfigError
from distrec.methods.egean.config import GroundTruthConfig
from distrec.storage import (
    atomic_parquet_writer,
    filesystem,
    full_url,
    write_text_atomic,
)

log = logging.getLogger("distrec")

LABELS = ("click", "purchase", "true_cvr", "cvr_draw")
SPARSE = ("user_id", "item_id", "item_category", "context")
_WORLD_SEED = 20241209
_CLICK_OWN_SCALE = 0.5  # click-only effects (a_*) are half as strong as the conversion drivers
_DENSE_WEIGHT_SCALE = 0.5
_CONVERSION_SALT, _CLICK_SALT, _CATEGORY_SALT = 100, 200, 300


def feature_schema(cfg: GroundTruthConfig, source: str = "<ground truth>") -> FeatureSchema:
    sizes = (cfg.num_users, cfg.num_items, cfg.num_categories, cfg.num_contexts)
    return FeatureSchema(
        sparse=tuple(SparseField(name, n) for name, n in zip(SPARSE, sizes)),
        dense=tuple(f"d{j}" for j in range(cfg.num_dense)),
        labels=LABELS,
        binary_labels=("click", "purchase", "cvr_draw"),  # true_cvr is a probability
        group_key="user_id",
        source=source,
    )


def arrow_schema(cfg: GroundTruthConfig) -> pa.Schema:
    fields = [pa.field("row_id", pa.int64())] + [pa.field(name, pa.int64()) for name in SPARSE]
    fields += [pa.field(f"d{j}", pa.float32()) for j in range(cfg.num_dense)]
    fields += [pa.field(name, pa.float32()) for name in (*LABELS, "true_ctr")]
    return pa.schema(fields)


class GroundTruthWorld:
    """The fixed hidden effects; ``probabilities`` maps features to (true CTR, true CVR)."""

    def __init__(self, cfg: GroundTruthConfig) -> None:
        rng = np.random.default_rng(_WORLD_SEED)
        self.cfg = cfg
        self.users = _Scramble(cfg.num_users, rng)
        self.items = _Scramble(cfg.num_items, rng)
        self.conversion_dense = rng.normal(0.0, _DENSE_WEIGHT_SCALE, cfg.num_dense)
        self.click_dense = rng.normal(0.0, _DENSE_WEIGHT_SCALE, cfg.num_dense)

    def category(self, items: np.ndarray) -> np.ndarray:
        u = (hidden_weight(_CATEGORY_SALT, items) + 1.0) / 2.0  # uniform in [0, 1)
        return np.minimum((u * self.cfg.num_categories).astype(np.int64), self.cfg.num_categories - 1)

    def probabilities(self, ids: dict[str, np.ndarray], dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        drivers = dense @ self.conversion_dense
        click_own = dense @ self.click_dense
        for k, name in enumerate(SPARSE):
            drivers = drivers + hidden_weight(_CONVERSION_SALT + k, ids[name])
            if name != "item_category":
                click_own = click_own + _CLICK_OWN_SCALE * hidden_weight(_CLICK_SALT + k, ids[name])
        drivers = self.cfg.driver_scale * drivers
        cvr = _sigmoid(self.cfg.cvr_bias + drivers)
        ctr = _sigmoid(self.cfg.ctr_bias + self.cfg.shift * drivers + click_own)
        return ctr, cvr

    def sample(self, rng: np.random.Generator, first_row: int, n: int) -> pa.Table:
        cfg = self.cfg
        items = self.items(_zipf_ranks(rng, cfg.num_items, cfg.zipf_a, n))
        ids = {
            "user_id": self.users(_zipf_ranks(rng, cfg.num_users, cfg.zipf_a, n)),
            "item_id": items,
            "item_category": self.category(items),
            "context": rng.integers(0, cfg.num_contexts, n),
        }
        dense = rng.standard_normal((n, cfg.num_dense))
        ctr, cvr = self.probabilities(ids, dense)
        click = rng.random(n) < ctr
        draw = rng.random(n) < cvr
        cols = {"row_id": np.arange(first_row, first_row + n, dtype=np.int64), **ids}
        cols |= {f"d{j}": dense[:, j].astype(np.float32) for j in range(cfg.num_dense)}
        cols |= {"click": click, "purchase": click & draw, "true_cvr": cvr, "cvr_draw": draw, "true_ctr": ctr}
        schema = arrow_schema(cfg)
        return pa.table({f.name: pa.array(np.asarray(cols[f.name]).astype(f.type.to_pandas_dtype()))
                         for f in schema}, schema=schema)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def check_config(cfg: GroundTruthConfig) -> None:
    positive = ("rows_per_file", "rows_per_row_group", "num_users", "num_items", "num_categories", "num_contexts")
    for name in positive:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"ground truth: {name} must be > 0, got {getattr(cfg, name)}")
    for name in ("rows", "valid_rows", "num_dense"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"ground truth: {name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.zipf_a <= 0:
        raise ConfigError(f"ground truth: zipf_a must be > 0, got {cfg.zipf_a}")


def write_split(out_dir: str, cfg: GroundTruthConfig, rows: int, split: int,
                s3_endpoint_url: str | None = None, progress: bool = True) -> None:
    """``rows`` impressions as ``out_dir/part-NNNNN.parquet``, each file published whole.
    ``split`` (0 train, 1 valid, ...) keeps the splits' samples apart for one ``cfg.seed``."""
    check_config(cfg)
    fs, base = filesystem(out_dir, s3_endpoint_url)
    base = base.rstrip("/")
    world = GroundTruthWorld(cfg)
    schema = arrow_schema(cfg)
    num_files = max(1, math.ceil(rows / cfg.rows_per_file))
    with tqdm(total=rows, unit="rows", unit_scale=True, disable=not progress, desc=f"ground truth {out_dir}") as bar:
        for k in range(num_files):
            first = k * cfg.rows_per_file
            file_rows = min(cfg.rows_per_file, rows - first)
            with atomic_parquet_writer(f"{base}/part-{k:05d}.parquet", schema, fs) as writer:
                for g, start in enumerate(range(0, file_rows, cfg.rows_per_row_group)):
                    n = min(cfg.rows_per_row_group, file_rows - start)
                    rng = np.random.default_rng([cfg.seed, split, k, g])
                    writer.write_table(world.sample(rng, first + start, n), row_group_size=n)
                    bar.update(n)


def write_schema(path: str, cfg: GroundTruthConfig, s3_endpoint_url: str | None = None) -> FeatureSchema:
    fs, fs_path = filesystem(path, s3_endpoint_url)
    schema = feature_schema(cfg, source=full_url(fs, fs_path))
    write_text_atomic(fs_path, yaml.safe_dump(schema.to_dict(), sort_keys=False), fs)
    return schema


def write_ground_truth(out: str, cfg: GroundTruthConfig, s3_endpoint_url: str | None = None,
                       progress: bool = True) -> FeatureSchema:
    """``out/train``, ``out/valid`` (when ``valid_rows`` > 0) and ``out/schema.yaml`` (last)."""
    out = out.rstrip("/")
    write_split(f"{out}/train", cfg, cfg.rows, 0, s3_endpoint_url, progress)
    if cfg.valid_rows:
        write_split(f"{out}/valid", cfg, cfg.valid_rows, 1, s3_endpoint_url, progress)
    return write_schema(f"{out}/schema.yaml", cfg, s3_endpoint_url)


def prepare_data(cfg) -> None:
    """With ``method.ground_truth`` set, generate whichever of data.train / data.valid /
    data.schema is absent (called on the driver before workers start)."""
    gt = cfg.method.ground_truth
    if gt is None:
        return
    endpoint = cfg.data.s3_endpoint_url

    def absent(path: str) -> bool:
        fs, p = filesystem(path, endpoint)
        return not fs.exists(p)

    if absent(cfg.data.train):
        log.info("generating %d ground-truth training rows (shift %.2f) in %s", gt.rows, gt.shift, cfg.data.train)
        write_split(cfg.data.train, gt, gt.rows, 0, endpoint)
    if cfg.data.valid and absent(cfg.data.valid):
        log.info("generating %d ground-truth validation rows in %s", gt.valid_rows, cfg.data.valid)
        write_split(cfg.data.valid, gt, gt.valid_rows, 1, endpoint)
    if absent(cfg.data.schema):
        write_schema(cfg.data.schema, gt, endpoint)
