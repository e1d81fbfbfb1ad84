"""The raw Ali-CCP importer (``aliccp_raw``) on a raw-format copy of the real sample: the same
rows, labels, ids and dense values as the CSV importer gives on the sample itself; top-k of
multi-valued fields; the valid split; bad input; and a short EGEAN run on the imported data."""

from __future__ import annotations

import gzip
import hashlib
import math
import shutil
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from egean_workers import train_variants
from omegaconf import OmegaConf

from distrec.data.importers import (
    IMPORTERS,
    aliccp_raw,
    import_aliccp,
    import_aliccp_raw,
)
from distrec.data.importers.common import Hasher
from distrec.data.schema import FeatureSchema
from distrec.errors import DataError
from distrec.methods import load_config
from distrec.train.local_spawn import spawn

CSV_FILES = {"train": "ali_ccp_train_sample.csv", "test": "ali_ccp_test_sample.csv"}
USER_FIELDS = ("101", "121", "122", "124", "125", "126", "127", "128", "129",
               "109_14", "110_14", "127_14", "150_14")
ITEM_FIELDS = ("205", "206", "207", "210", "216", "508", "509", "702", "853", "301")
QUIET = {"progress_every_s": 1e9}


def feature(field: str, feature_id, value) -> str:
    return f"{field}\x02{feature_id}\x03{value}"


def skeleton_line(sample_id, click, purchase, common_key: str, features: list[str]) -> str:
    return f"{sample_id},{click},{purchase},{common_key},{len(features)},{chr(1).join(features)}"


def common_line(key: str, features: list[str]) -> str:
    return f"{key},{len(features)},{chr(1).join(features)}"


def row_features(row: dict, fields) -> list[str]:
    """A preprocessed row's fields as raw features; multi-valued ones carry their D-value."""
    return [feature(f, row[f], row.get(f"D{f}", "1.0")) for f in fields]


def write_raw_copy(csv: Path, skeleton: Path, common: Path, first_sample_id: int) -> None:
    """Each preprocessed row -> one skeleton line plus, once per distinct user side, a common
    line keyed by the md5 of the user-side features; the D-values become feature values."""
    rows = pd.read_csv(csv, dtype=str)
    commons: dict[str, str] = {}
    lines = []
    for i, row in enumerate(rows.to_dict("records")):
        user = row_features(row, USER_FIELDS)
        key = hashlib.md5("\x01".join(user).encode()).hexdigest()
        commons.setdefault(key, common_line(key, user))
        lines.append(skeleton_line(first_sample_id + i, row["click"], row["purchase"], key,
                                   row_features(row, ITEM_FIELDS)))
    skeleton.write_text("\n".join(lines) + "\n")
    common.write_text("\n".join(commons.values()) + "\n")


def read_split(out: Path, split: str) -> pd.DataFrame:
    return pq.read_table(out / split).to_pandas()


def assert_clean(out: Path) -> None:
    left = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert left == []


@pytest.fixture(scope="module")
def sample(shared_data, tmp_path_factory) -> tuple[Path, Path]:
    """(the sample's train + test CSVs, their raw-format copy)."""
    csv_dir, raw_dir = tmp_path_factory.mktemp("csv"), tmp_path_factory.mktemp("raw")
    for split, name in CSV_FILES.items():
        shutil.copy(shared_data / "ali-ccp" / name, csv_dir / name)
        write_raw_copy(csv_dir / name, raw_dir / f"sample_skeleton_{split}.csv",
                       raw_dir / f"common_features_{split}.csv", {"train": 0, "test": 10_000}[split])
    return csv_dir, raw_dir


def edited_copy(raw_dir: Path, dst: Path, name: str, line_no: int, edit) -> Path:
    """A copy of the raw sample whose file ``name`` has line ``line_no`` (1-based) edited."""
    shutil.copytree(raw_dir, dst)
    lines = (dst / name).read_text().split("\n")
    edited = edit(lines[line_no - 1])
    assert edited != lines[line_no - 1]
    lines[line_no - 1] = edited
    (dst / name).write_text("\n".join(lines))
    return dst


# --- the same data as the CSV importer -------------------------------------------------------------


@pytest.mark.parametrize("ids", [{}, {"max_vocab": 16}, {"hash_all": True, "max_vocab": 1000}],
                         ids=["vocabulary", "large-fields-hashed", "hash-all"])
def test_raw_copy_imports_as_the_csv_importer_imports_the_sample(sample, tmp_path, ids):
    csv_dir, raw_dir = sample
    csv_schema = import_aliccp(str(csv_dir), str(tmp_path / "csv"), **ids, **QUIET)
    schema = import_aliccp_raw(str(raw_dir), str(tmp_path / "raw"), max_ids_per_field=1,
                               valid_share=0.0, **ids, **QUIET)

    assert schema.labels == csv_schema.labels and schema.group_key == csv_schema.group_key == "f_101"
    assert schema.dense == csv_schema.dense
    assert schema.sparse_names == csv_schema.sparse_names
    multi = {f"f_{f}" for f in aliccp_raw.MULTI_VALUED}
    for mine, theirs in zip(schema.sparse, csv_schema.sparse):
        assert (mine.num_embeddings, mine.hash) == (theirs.num_embeddings, theirs.hash), mine.name
        assert mine.multi_hot == (mine.name in multi)
    assert FeatureSchema.load(str(tmp_path / "raw" / "schema.yaml")) == schema

    assert len(read_split(tmp_path / "raw", "valid")) == 0
    for split, size in (("train", 100), ("test", 50)):
        raw, csv = read_split(tmp_path / "raw", split), read_split(tmp_path / "csv", split)
        assert len(raw) == len(csv) == size
        for name in schema.sparse_names:
            # ids are the same: both vocabularies number values by first appearance, train first
            ids = raw[name].to_numpy()
            if name in multi:
                assert all(len(v) == 1 for v in ids), name
                ids = np.array([v[0] for v in ids])
            np.testing.assert_array_equal(ids, csv[name].to_numpy(), err_msg=f"{split} {name}")
        for name in [*schema.dense, "click", "purchase"]:
            np.testing.assert_array_equal(raw[name], csv[name], err_msg=f"{split} {name}")
            assert raw[name].dtype == np.float32


def test_gzipped_files_on_an_fsspec_filesystem(sample, tmp_path):
    _, raw_dir = sample
    fs = fsspec.filesystem("memory")
    for path in raw_dir.iterdir():
        with fs.open(f"/aliccp-raw-test/{path.name}.gz", "wb") as fh:
            fh.write(gzip.compress(path.read_bytes()))
    try:
        import_aliccp_raw("memory://aliccp-raw-test", str(tmp_path / "gz"), seed=3, **QUIET)
    finally:
        fs.rm("/aliccp-raw-test", recursive=True)
    import_aliccp_raw(str(raw_dir), str(tmp_path / "plain"), seed=3, **QUIET)
    for split in ("train", "valid", "test"):
        assert read_split(tmp_path / "gz", split).equals(read_split(tmp_path / "plain", split))


def test_valid_split_is_a_seeded_share_of_train(sample, tmp_path):
    _, raw_dir = sample

    def imported(name, **options):
        import_aliccp_raw(str(raw_dir), str(tmp_path / name), **options, **QUIET)
        return read_split(tmp_path / name, "train"), read_split(tmp_path / name, "valid")

    everything, none = imported("all", valid_share=0.0)
    assert len(everything) == 100 and len(none) == 0
    train, valid = imported("a", valid_share=0.3)
    again_train, again_valid = imported("b", valid_share=0.3)
    _, other_seed = imported("c", valid_share=0.3, seed=1)
    assert again_train.equals(train) and again_valid.equals(valid)
    assert 20 <= len(valid) <= 40 and len(train) + len(valid) == 100
    assert not other_seed.equals(valid)

    def as_rows(frame):  # the multiset of rows, by value
        return sorted(map(repr, frame.to_dict("records")))

    assert as_rows(pd.concat([train, valid])) == as_rows(everything)
    assert read_split(tmp_path / "a", "test").equals(read_split(tmp_path / "all", "test"))


# --- multi-valued fields ---------------------------------------------------------------------------


def write_tiny_raw(root: Path) -> Path:
    """Two users with several behaviour ids (values out of order, one tie) and two impressions
    each; one impression carries several 508 ids."""
    root.mkdir()
    users = {
        "a" * 32: [feature("101", 7, 1.0), feature("109_14", 11, 0.2), feature("109_14", 12, 0.9),
                   feature("109_14", 13, 0.5), feature("109_14", 14, 0.9), feature("109_14", 15, 0.1)],
        "b" * 32: [feature("101", 8, 1.0), feature("109_14", 13, 0.7), feature("109_14", 16, 0.3)],
    }
    # b's record first: ids still follow the impressions' order, not the common file's
    (root / "common_features_train.csv").write_text(
        "".join(common_line(k, fs) + "\n" for k, fs in reversed(users.items())))
    item = [feature("205", 100, 1.0)]
    combos = item + [feature("508", 51, 0.1), feature("508", 52, 0.6), feature("508", 53, 0.3)]
    lines = [skeleton_line(0, 1, 1, "a" * 32, combos), skeleton_line(1, 0, 0, "b" * 32, item),
             skeleton_line(2, 1, 0, "a" * 32, item), skeleton_line(3, 0, 0, "b" * 32, item)]
    (root / "sample_skeleton_train.csv").write_text("\n".join(lines) + "\n")
    return root


def test_multi_valued_fields_keep_the_largest_valued_ids_largest_first(tmp_path):
    src = write_tiny_raw(tmp_path / "raw")
    schema = import_aliccp_raw(str(src), str(tmp_path / "vocab"), max_ids_per_field=3,
                               valid_share=0.0, **QUIET)
    rows = read_split(tmp_path / "vocab", "train")
    assert "test" not in {p.name for p in (tmp_path / "vocab").iterdir()}
    # top 3 of a: 12 (0.9), 14 (0.9, after 12 in the file), 13 (0.5) -> ids 1, 2, 3; b: 13, 16
    assert [list(v) for v in rows.f_109_14] == [[1, 2, 3], [3, 4], [1, 2, 3], [3, 4]]
    np.testing.assert_allclose(rows.d_109_14, [0.9, 0.7, 0.9, 0.7], rtol=1e-6)
    assert [list(v) for v in rows.f_508] == [[1, 2, 3], [], [], []]  # 52, 53, 51
    np.testing.assert_allclose(rows.d_508, [0.6, 0, 0, 0], rtol=1e-6)
    assert list(rows.f_101) == [1, 2, 1, 2] and list(rows.f_121) == [0, 0, 0, 0]
    assert schema.field("f_109_14").multi_hot and schema.field("f_109_14").num_embeddings == 5

    import_aliccp_raw(str(src), str(tmp_path / "hashed"), max_ids_per_field=2, valid_share=0.0,
                      hash_all=True, max_vocab=1000, **QUIET)
    hashed = read_split(tmp_path / "hashed", "train")
    expected = Hasher(1000).encode(pa.array([12, 14]))
    assert list(hashed.f_109_14[0]) == list(expected) == list(hashed.f_109_14[2])


def test_a_field_on_the_skeleton_line_wins_over_the_common_record(tmp_path):
    src = write_tiny_raw(tmp_path / "raw")
    lines = (src / "sample_skeleton_train.csv").read_text().splitlines()
    lines[1] = skeleton_line(1, 0, 0, "b" * 32, [feature("205", 100, 1.0), feature("109_14", 99, 2.0)])
    (src / "sample_skeleton_train.csv").write_text("\n".join(lines) + "\n")
    import_aliccp_raw(str(src), str(tmp_path / "out"), valid_share=0.0, **QUIET)
    rows = read_split(tmp_path / "out", "train")
    # first appearances: 12, 14, 13, 11, 15 (row 0), then 99 (row 1's own), then 16 (row 3)
    assert [list(v) for v in rows.f_109_14] == [[1, 2, 3, 4, 5], [6], [1, 2, 3, 4, 5], [3, 7]]
    np.testing.assert_allclose(rows.d_109_14, [0.9, 2.0, 0.9, 0.7], rtol=1e-6)


# --- bad input -------------------------------------------------------------------------------------


BAD_LINES = {
    "purchase without click": ("sample_skeleton_train.csv", lambda line: line.replace(",0,0,", ",0,1,", 1),
                               r"purchase=1 without a click"),
    "unknown common index": ("sample_skeleton_train.csv",
                             lambda line: line.replace(line.split(",")[3], "f" * 32),
                             r"common_feature_index 'f{32}' is not in .*common_features_train\.csv"),
    "malformed feature": ("sample_skeleton_train.csv", lambda line: line.replace("\x02", "", 1),
                          r"malformed feature '205[0-9]+\\x03"),
    "non-numeric id": ("sample_skeleton_test.csv", lambda line: line.replace("206\x02", "206\x02x", 1),
                       r"malformed feature '206\\x02x[0-9]+\\x03"),
    "non-numeric value": ("common_features_train.csv", lambda line: line.replace("\x031.0", "\x03one", 1),
                          r"malformed feature '101\\x02[0-9]+\\x03one'"),
}


@pytest.mark.parametrize("hash_all", [False, True], ids=["vocabulary-pass", "writing-pass"])
@pytest.mark.parametrize("problem", list(BAD_LINES))
def test_bad_lines_name_file_and_line_and_leave_nothing(sample, tmp_path, monkeypatch, problem, hash_all):
    _, raw_dir = sample
    name, edit, message = BAD_LINES[problem]
    line_no = 1 if name.startswith("common") else 40  # the sample has a single user
    if problem == "purchase without click":  # a line with click=0
        lines = (raw_dir / name).read_text().splitlines()
        line_no = next(i for i, line in enumerate(lines, 1) if i >= 40 and ",0,0," in line)
    src = edited_copy(raw_dir, tmp_path / "raw", name, line_no, edit)
    monkeypatch.setattr(aliccp_raw, "BLOCK_BYTES", 2048)  # several blocks: parts are written before
    out = tmp_path / "out"
    with pytest.raises(DataError, match=rf"{name} line {line_no}: .*{message}"):
        # hash_all has no vocabulary pass: the error comes while parts are being written
        import_aliccp_raw(str(src), str(out), hash_all=hash_all, row_group_size=4, rows_per_file=8,
                          **QUIET)
    assert_clean(out)


def test_missing_common_records_can_be_skipped(sample, tmp_path):
    _, raw_dir = sample
    skeleton = (raw_dir / "sample_skeleton_train.csv").read_text().splitlines()
    key = skeleton[9].split(",")[3]
    using_it = sum(line.split(",")[3] == key for line in skeleton)
    src = tmp_path / "raw"
    shutil.copytree(raw_dir, src)
    common = (src / "common_features_train.csv").read_text().splitlines()
    (src / "common_features_train.csv").write_text(
        "\n".join(line for line in common if not line.startswith(key)) + "\n")
    first_use = next(i for i, line in enumerate(skeleton, 1) if line.split(",")[3] == key)
    with pytest.raises(DataError, match=rf"sample_skeleton_train\.csv line {first_use}: .*{key}"):
        import_aliccp_raw(str(src), str(tmp_path / "err"), **QUIET)
    import_aliccp_raw(str(src), str(tmp_path / "out"), missing_common="skip", valid_share=0.0, **QUIET)
    assert len(read_split(tmp_path / "out", "train")) == 100 - using_it


def test_missing_files_are_named(sample, tmp_path):
    _, raw_dir = sample
    src = tmp_path / "raw"
    shutil.copytree(raw_dir, src)
    (src / "common_features_test.csv").unlink()
    with pytest.raises(DataError, match=r"common_test file not found.*common_features_test\*"):
        import_aliccp_raw(str(src), str(tmp_path / "out"), **QUIET)
    (src / "sample_skeleton_test.csv").unlink()
    import_aliccp_raw(str(src), str(tmp_path / "out"), **QUIET)  # no test files: no test split
    assert not (tmp_path / "out" / "test").exists()
    with pytest.raises(DataError, match=r"Ali-CCP raw input not found"):
        import_aliccp_raw(str(tmp_path / "nowhere"), str(tmp_path / "out2"), **QUIET)


# --- training on it --------------------------------------------------------------------------------


def test_two_workers_train_egean_on_the_raw_imported_sample(sample, tmp_path):
    _, raw_dir = sample
    data = tmp_path / "ali-ccp-raw"
    IMPORTERS["aliccp_raw"](str(raw_dir), str(data), max_ids_per_field=3, valid_share=0.3, **QUIET)
    cfg = load_config("configs/egean/ali-ccp-raw.yaml", [
        f"run.output_dir={tmp_path / 'runs'}", f"data.train={data / 'train'}",
        f"data.valid={data / 'valid'}", f"data.schema={data / 'schema.yaml'}",
        # the sample's small settings (configs/egean/ali-ccp-sample.yaml)
        "data.batch_size=16", "data.eval_batch_size=32", "data.loader_workers=0",
        "sharding.default_types=[table_wise]", "trainer.epochs=2", "trainer.checkpoint_every=0",
        "trainer.log_every=1000", "metrics.tensorboard=false",
    ])
    (metrics,) = spawn(train_variants, 2, OmegaConf.to_container(cfg, resolve=True), [{}])[0]
    valid = read_split(data, "valid")
    assert metrics["epoch_rows"] == 100 - len(valid) and metrics["ctr_num_rows"] == len(valid)
    assert metrics["cvr_num_rows"] == valid.click.sum() >= 2  # CVR AUC over clicked impressions
    for key in ("ctr_auc", "cvr_auc", "ctcvr_auc"):
        assert 0.0 <= metrics[key] <= 1.0, key
    for key in ("ctr_logloss", "cvr_logloss", "ctcvr_logloss"):
        assert math.isfinite(metrics[key]), key


def test_the_raw_config_is_the_full_ali_ccp_config_on_the_raw_import():
    raw, csv = load_config("configs/egean/ali-ccp-raw.yaml"), load_config("configs/egean/ali-ccp.yaml")
    assert raw.data.train == "runs/data/ali-ccp-raw/train"
    assert raw.data.schema == "runs/data/ali-ccp-raw/schema.yaml"
    for section in ("model", "method", "sharding", "trainer"):
        assert raw[section] == csv[section], section
    assert raw.data.batch_size == csv.data.batch_size
