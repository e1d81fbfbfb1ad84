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
    """With ``data.synth`` set, write the train (valid, test) splits that are absent; each split
    draws other rows (seed + 0, 1, 2) from the same generator.

    The schema is written next to the training files; ``data.schema`` must point at it."""
    synth = cfg.data.synth
    if synth is None:
        return
    endpoint = cfg.data.s3_endpoint_url
    if not _exists(cfg.data.train, endpoint):
        log.info("generating %d synthetic training rows in %s", synth.rows, cfg.data.train)
        write_synthetic(cfg.data.train, synth, s3_endpoint_url=endpoint)
    for split, path, rows, offset in (("validation", cfg.data.valid, synth.valid_rows, 1),
                                      ("test", cfg.data.test, synth.test_rows, 2)):
        if path and not _exists(path, endpoint):
            log.info("generating %d synthetic %s rows in %s", rows, split, path)
            write_synthetic(path, OmegaConf.merge(synth, {"rows": rows, "seed": synth.seed + offset}),
                            s3_endpoint_url=endpoint)


def check_inputs(cfg) -> None:
    """Fail before any worker starts: the schema loads, and every train/valid file's footer and
    columns match it (footers only, no rows are read)."""
    from distrec.data.reader import plan_units
    from distrec.data.schema import FeatureSchema

    schema = FeatureSchema.load(cfg.data.schema)
    for path in (cfg.data.train, cfg.data.valid, cfg.data.test):
        if path:
            plan_units(path, cfg.data.s3_endpoint_url, schema)
