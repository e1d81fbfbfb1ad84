"""Make a config's data exist: generate the synthetic splits a smoke config asks for."""

from __future__ import annotations

import logging
import posixpath

from omegaconf import OmegaConf

from distrec.data.schema import FeatureSchema
from distrec.data.synth import feature_schema, write_synthetic
from distrec.errors import DataError
from distrec.storage import filesystem, storage_error

log = logging.getLogger("distrec")


def _exists(path: str, s3_endpoint_url: str | None) -> bool:
    fs, p = filesystem(path, s3_endpoint_url)
    try:
        return fs.exists(p)
    except Exception as exc:  # noqa: BLE001 - an unreachable endpoint becomes one actionable error
        raise storage_error(path, exc, s3_endpoint_url) from None


def _same_file(a: str, b: str, s3_endpoint_url: str | None) -> bool:
    (fs_a, path_a), (fs_b, path_b) = filesystem(a, s3_endpoint_url), filesystem(b, s3_endpoint_url)
    return type(fs_a) is type(fs_b) and posixpath.normpath(path_a) == posixpath.normpath(path_b)


def write_synthetic_splits(cfg) -> None:
    """With ``data.synth`` set, write the train (valid, test) splits that are absent; each split
    draws other rows (seed + 0, 1, 2) from the same generator.

    Generation happens only where the config plainly names the generated data set, so that a
    misspelled path is an error instead of fresh data at the wrong place: the training split
    when ``data.schema`` is the schema file the generator writes (``<data.train>/schema.yaml``),
    a validation or test split when the training data is this generator's (same schema)."""
    synth = cfg.data.synth
    if synth is None:
        return
    data, endpoint = cfg.data, cfg.data.s3_endpoint_url
    generated_train = not _exists(data.train, endpoint)
    if generated_train:
        written_schema = posixpath.join(data.train.rstrip("/"), "schema.yaml")
        if not _same_file(data.schema, written_schema, endpoint):
            raise DataError(
                f"data.train: {data.train} does not exist. data.synth generates training data only where "
                f"data.schema is the schema it writes ({written_schema}), and data.schema is {data.schema}: "
                "correct data.train, or set data.schema to that file to generate data there"
            )
        log.info("generating %d synthetic training rows in %s", synth.rows, data.train)
        write_synthetic(data.train, synth, s3_endpoint_url=endpoint)
    for key, split, path, rows, offset in (("data.valid", "validation", data.valid, synth.valid_rows, 1),
                                           ("data.test", "test", data.test, synth.test_rows, 2)):
        if not path or _exists(path, endpoint):
            continue
        if not generated_train and FeatureSchema.load(data.schema, endpoint) != feature_schema(synth):
            raise DataError(
                f"{key}: {path} does not exist, and data.synth generates it only beside training data "
                f"it generated; the schema of data.train ({data.schema}) is not data.synth's: "
                f"correct {key}, or set it to null"
            )
        log.info("generating %d synthetic %s rows in %s", rows, split, path)
        write_synthetic(path, OmegaConf.merge(synth, {"rows": rows, "seed": synth.seed + offset}),
                        s3_endpoint_url=endpoint)


def check_inputs(cfg) -> None:
    """Fail before any worker starts: the schema loads, and every train/valid file's footer and
    columns match it (footers only, no rows are read)."""
    from distrec.data.reader import plan_units

    schema = FeatureSchema.load(cfg.data.schema, cfg.data.s3_endpoint_url)
    for path in (cfg.data.train, cfg.data.valid, cfg.data.test):
        if path:
            plan_units(path, cfg.data.s3_endpoint_url, schema)
