"""Make a config's data exist: generate the synthetic splits a smoke config asks for."""

from __future__ import annotations

import logging

from omegaconf import OmegaConf

from distrec.data.synth import write_synthetic
from distrec.storage import filesystem

log = logging.getLogger("distrec")


def _exists(path: str, s3_endpoint_url: str | None) -> bool:
    fs, p = filesystem(path, s3_endpoint_url)
    return fs.exists(p)


def write_synthetic_splits(cfg) -> None:
    """With ``data.synth`` set, write the train (and valid) splits if they are absent.

    The schema is written next to the training files; ``data.schema`` must point at it."""
    synth = cfg.data.synth
    if synth is None:
        return
    endpoint = cfg.data.s3_endpoint_url
    if not _exists(cfg.data.train, endpoint):
        log.info("generating %d synthetic training rows in %s", synth.rows, cfg.data.train)
        write_synthetic(cfg.data.train, synth, s3_endpoint_url=endpoint)
    if cfg.data.valid and not _exists(cfg.data.valid, endpoint):
        valid_cfg = OmegaConf.merge(synth, {"rows": synth.valid_rows, "seed": synth.seed + 1})
        log.info("generating %d synthetic validation rows in %s", synth.valid_rows, cfg.data.valid)
        write_synthetic(cfg.data.valid, valid_cfg, s3_endpoint_url=endpoint)


def check_inputs(cfg) -> None:
    """Fail before any worker starts: the schema loads, and every train/valid file's footer and
    columns match it (footers only, no rows are read)."""
    from distrec.data.reader import plan_units
    from distrec.data.schema import FeatureSchema

    schema = FeatureSchema.load(cfg.data.schema)
    for path in (cfg.data.train, cfg.data.valid):
        if path:
            plan_units(path, cfg.data.s3_endpoint_url, schema)
