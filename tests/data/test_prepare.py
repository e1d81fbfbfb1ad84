"""Making a config's data exist: synthetic splits only where the config plainly names the generated
data set (a misspelled path is an error, not new data), every read and write through
data.s3_endpoint_url, and an unreachable endpoint as one error naming endpoint and path."""

import socket
import time

import pytest

from distrec.data.prepare import check_inputs, write_synthetic_splits
from distrec.data.schema import FeatureSchema
from distrec.errors import DataError
from distrec.methods import load_config

SMOKE = "configs/ctr/smoke.yaml"
SMALL = ["data.synth.rows=600", "data.synth.valid_rows=200", "data.synth.test_rows=200",
         "data.synth.rows_per_file=300", "data.synth.rows_per_row_group=100"]


def config(data, *extra):
    return load_config(SMOKE, [f"data.train={data}/train", f"data.valid={data}/valid", f"data.test={data}/test",
                               f"data.schema={data}/train/schema.yaml", *SMALL, *extra])


def test_generates_the_data_set_the_config_names(tmp_path):
    cfg = config(tmp_path)
    write_synthetic_splits(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test", "train", "valid"]
    check_inputs(cfg)


def test_misspelled_train_path_is_an_error_not_new_data(tmp_path):
    write_synthetic_splits(config(tmp_path))
    typo = tmp_path / "trian"
    with pytest.raises(DataError) as info:
        write_synthetic_splits(config(tmp_path, f"data.train={typo}"))
    assert str(info.value).startswith(
        f"data.train: {typo} does not exist. data.synth generates training data only where data.schema is "
        f"the schema it writes ({typo}/schema.yaml), and data.schema is {tmp_path}/train/schema.yaml")
    assert not typo.exists()


def test_misspelled_valid_path_beside_other_data_is_an_error(tmp_path):
    write_synthetic_splits(config(tmp_path))
    typo = tmp_path / "vaild"
    # the training data is not this generator's (another vocabulary): its splits are not generated
    with pytest.raises(DataError, match=rf"^data.valid: {typo} does not exist, and data.synth generates it only "
                                        r"beside training data it generated"):
        write_synthetic_splits(config(tmp_path, f"data.valid={typo}", "data.synth.num_embeddings=77"))
    assert not typo.exists()
    # the same generator's training data: a new split beside it is what the config asks for
    write_synthetic_splits(config(tmp_path, f"data.valid={typo}"))
    assert (typo / "schema.yaml").exists()


def test_schema_and_splits_on_s3_use_the_configured_endpoint(s3_server, s3_bucket, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # only data.s3_endpoint_url names the server
    cfg = config(f"{s3_bucket}/data", f"data.s3_endpoint_url={s3_server}")
    write_synthetic_splits(cfg)
    check_inputs(cfg)
    schema = FeatureSchema.load(cfg.data.schema, cfg.data.s3_endpoint_url)
    assert schema.source == f"{s3_bucket}/data/train/schema.yaml" and "c0" in schema.sparse_names


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_is_one_error_naming_endpoint_and_path(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    cfg = config("s3://nowhere/data", f"data.s3_endpoint_url={endpoint}")
    start = time.monotonic()
    with pytest.raises(DataError, match=rf"^cannot read s3://nowhere/data/train from S3 endpoint {endpoint}: "):
        write_synthetic_splits(cfg)
    with pytest.raises(DataError, match=rf"^cannot read s3://nowhere/data/train/schema.yaml from S3 endpoint {endpoint}: "):
        FeatureSchema.load(cfg.data.schema, endpoint)
    assert time.monotonic() - start < 30
