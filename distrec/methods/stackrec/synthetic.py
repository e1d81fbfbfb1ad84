"""Synthetic sequences where depth matters: the next item depends on an item far back.

Each sequence starts with ``long_lag`` uniform random items; after that, position t is
  * ``long_map[x[t - long_lag]]`` with probability ``p_long``  (needs a receptive field > long_lag),
  * ``short_map[x[t - 1]]``        with probability ``p_short`` (any model can learn it),
  * a uniform random item otherwise,
with ``long_map``/``short_map`` fixed random permutations of the items. A model that cannot see
``long_lag`` positions back is capped near ``p_short`` (HR@k); one that can approaches
``p_long + p_short``. NextItNet's receptive field is 1 + 6 * sum(dilations of its blocks) for
kernel 3 ([1, 4] repeated: 31 positions with 2 blocks, 61 with 4, 121 with 8), so
``long_lag=48`` separates 2 from 4 blocks and ``long_lag=100`` 4 from 8.
"""

from __future__ import annotations

import logging
import posixpath

import numpy as np

from distrec.data.importers.common import WriteOptions
from distrec.data.importers.sessions import write_sequence_splits
from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError
from distrec.methods.stackrec.config import SyntheticSequencesConfig as LongRangeSpec
from distrec.storage import filesystem

log = logging.getLogger("distrec")


def long_range_sequences(spec: LongRangeSpec) -> list[np.ndarray]:
    if spec.length <= spec.long_lag or spec.num_items < 3:
        raise ConfigError(f"synthetic sequences: need length > long_lag and num_items >= 3, got {spec}")
    if spec.p_long < 0 or spec.p_short < 0 or spec.p_long + spec.p_short > 1:
        raise ConfigError(f"synthetic sequences: p_long + p_short must be in [0, 1], got {spec}")
    rng = np.random.default_rng(spec.seed)
    n, v = spec.num_sequences, spec.num_items
    long_map = np.r_[0, rng.permutation(v - 1) + 1]
    short_map = np.r_[0, rng.permutation(v - 1) + 1]
    x = rng.integers(1, v, size=(n, spec.length))
    rule = rng.random((n, spec.length))
    for t in range(spec.long_lag, spec.length):
        x[:, t] = np.where(rule[:, t] < spec.p_long, long_map[x[:, t - spec.long_lag]],
                           np.where(rule[:, t] < spec.p_long + spec.p_short, short_map[x[:, t - 1]], x[:, t]))
    return list(x.astype(np.int64))


def write_long_range(out: str, spec: LongRangeSpec, max_len: int | None = None, cl_chunks: int = 5,
                     overwrite: bool = False) -> FeatureSchema:
    """Generate and write the sequences in the layout of ``distrec data import sessions``."""
    return write_sequence_splits(
        long_range_sequences(spec), spec.num_items, out, max_len=max_len or spec.length,
        cl_chunks=cl_chunks, seed=spec.seed, options=WriteOptions(256, 1 << 20, overwrite, 10.0),
    )


def ensure_data(cfg) -> None:
    """Write the synthetic sequences a config asks for (``method.synthetic``) if they are absent."""
    synth = cfg.method.synthetic
    if synth is None:
        return
    fs, schema_path = filesystem(cfg.data.schema, cfg.data.s3_endpoint_url)
    if fs.exists(schema_path):
        return
    out = posixpath.dirname(cfg.data.schema)
    log.info("generating %d synthetic long-range sequences in %s", synth.num_sequences, out)
    write_long_range(out, synth, cl_chunks=cfg.method.cl_chunks, overwrite=True)
