"""The ground-truth generator: known conversion probabilities, covariate shift, layout, CLI."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from distrec.cli import main
from distrec.data.reader import plan_units
from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError
from distrec.methods.egean.config import GroundTruthConfig
from distrec.methods.egean.ground_truth import (
    SPARSE,
    GroundTruthWorld,
    write_ground_truth,
)


def read(path):
    return pq.read_table(path).to_pandas()


def test_layout_labels_and_known_probabilities(tmp_path):
    cfg = GroundTruthConfig(rows=3000, valid_rows=1000, rows_per_file=1000, rows_per_row_group=250,
                            num_users=300, num_items=500, shift=2.0)
    schema = write_ground_truth(str(tmp_path / "gt"), cfg, progress=False)
    assert schema.labels == ("click", "purchase", "true_cvr", "cvr_draw")
    assert schema.group_key == "user_id"
    loaded = FeatureSchema.load(str(tmp_path / "gt" / "schema.yaml"))
    assert loaded == schema
    files = sorted((tmp_path / "gt" / "train").glob("part-*.parquet"))
    assert len(files) == 3
    assert all(pq.ParquetFile(f).metadata.num_row_groups == 4 for f in files)  # bounded row groups
    assert sum(u.num_rows for u in plan_units(str(tmp_path / "gt" / "train"), None, loaded)) == 3000

    df = read(tmp_path / "gt" / "train")
    assert list(df.row_id) == list(range(3000))
    assert (df.purchase == df.click * df.cvr_draw).all()  # purchases only on clicks
    # the stored probabilities are the world's function of the stored features
    world = GroundTruthWorld(cfg)
    ids = {name: df[name].to_numpy() for name in SPARSE}
    dense = df[[f"d{j}" for j in range(cfg.num_dense)]].to_numpy().astype(np.float64)
    ctr, cvr = world.probabilities(ids, dense)
    np.testing.assert_allclose(df.true_cvr, cvr, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(df.true_ctr, ctr, rtol=1e-5, atol=1e-6)
    # the draws follow the probabilities (4 standard errors)
    for draw, prob in ((df.cvr_draw, df.true_cvr), (df.click, df.true_ctr)):
        se = np.sqrt((prob * (1 - prob)).sum()) / len(df)
        assert abs(draw.mean() - prob.mean()) < 4 * se


def test_shift_moves_clicks_towards_impressions_that_convert():
    gaps = []
    for shift in (0.0, 1.0, 3.0):
        world = GroundTruthWorld(GroundTruthConfig(shift=shift))
        df = world.sample(np.random.default_rng(0), 0, 20000).to_pandas()
        clicked = df.click > 0
        gaps.append(df.true_cvr[clicked].mean() - df.true_cvr.mean())
    assert abs(gaps[0]) < 0.01  # no shift: the clicked space is a random sample
    assert gaps[1] > 0.05 and gaps[2] > gaps[1]


def test_same_seed_same_data_other_split_other_rows(tmp_path):
    cfg = GroundTruthConfig(rows=500, valid_rows=500, rows_per_file=500, rows_per_row_group=500)
    write_ground_truth(str(tmp_path / "a"), cfg, progress=False)
    write_ground_truth(str(tmp_path / "b"), cfg, progress=False)
    a, b = read(tmp_path / "a" / "train"), read(tmp_path / "b" / "train")
    assert a.equals(b)
    assert not a.user_id.equals(read(tmp_path / "a" / "valid").user_id)


def test_cli_writes_data_and_rejects_bad_sizes(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["egean", "synth", "--out", str(out), "--rows", "400", "--valid-rows", "100",
                 "--shift", "1.5", "--no-progress"]) == 0
    assert "wrote 400 training and 100 validation impressions (shift 1.5)" in capsys.readouterr().out
    assert len(read(out / "valid")) == 100
    assert main(["egean", "synth", "--out", str(tmp_path / "bad"), "--rows-per-file", "0", "--no-progress"]) == 2
    assert "rows_per_file must be > 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="num_items"):
        write_ground_truth(str(tmp_path / "bad2"), GroundTruthConfig(num_items=0), progress=False)
