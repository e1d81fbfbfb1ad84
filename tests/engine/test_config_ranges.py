"""Numbers out of their range and invalid choices fail at config load, naming the file, the key and
what is expected, before Ray starts (they used to fail 30-90 s later inside TorchRec's planner)."""

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from distrec.config.schema import RANGE, DistrecConfig
from distrec.errors import ConfigError
from distrec.methods import load_config

REPO = Path(__file__).resolve().parents[2]
SMOKE = "configs/ctr/smoke.yaml"

OUT_OF_RANGE = [
    ("data.batch_size", 0, ">= 1"),
    ("data.batch_size", -256, ">= 1"),
    ("data.eval_batch_size", 0, ">= 1"),
    ("data.loader_workers", -1, ">= 0"),
    ("trainer.num_workers", 0, ">= 1"),
    ("trainer.epochs", 0, ">= 1"),
    ("trainer.cpus_per_worker", 0, "> 0"),
    ("trainer.startup_timeout_s", 0, "> 0"),
    ("trainer.log_every", 0, ">= 1"),
    ("trainer.max_steps", -2, ">= -1"),
    ("dense.zero_stage", 4, ">= 0 and <= 3"),
    ("dense.lr", -0.1, ">= 0"),
    ("model.dropout", 1.0, ">= 0 and < 1"),
    ("data.synth.rows", 0, ">= 1"),
    ("sharding.hbm_gb", 0, "> 0"),
    ("sweep.asha_reduction_factor", 1, "> 1"),
]


@pytest.mark.parametrize("key,value,expected", OUT_OF_RANGE, ids=[f"{k}={v}" for k, v, _ in OUT_OF_RANGE])
def test_out_of_range_override_names_key_and_range(key, value, expected):
    with pytest.raises(ConfigError) as info:
        load_config(SMOKE, [f"{key}={value}"])
    assert str(info.value) == (f"config key '{key}' in command line ({key}={value}): "
                               f"{value!r} is out of range; expected {expected}")


def test_out_of_range_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(f"defaults: [{REPO / SMOKE}]\ndata:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=rf"config key 'data.batch_size' in {path}: 0 is out of range; expected >= 1"):
        load_config(str(path))


def test_list_items_and_sweep_values_are_checked():
    with pytest.raises(ConfigError, match=r"'model.dense_arch\[1\]' .*: 0 is out of range; expected >= 1"):
        load_config(SMOKE, ["model.dense_arch=[64,0]"])
    with pytest.raises(ConfigError, match=r"'data.batch_size' in sweep.grid of .*: -1 is out of range"):
        load_config(SMOKE, ["sweep.grid.data.batch_size=[256,-1]"])


def test_boundary_values_and_sentinels_load():
    cfg = load_config(SMOKE, ["data.batch_size=1", "trainer.max_steps=-1", "trainer.fail_at_step=-1",
                              "dense.zero_stage=3", "trainer.cpus_per_worker=0.25", "data.synth=null"])
    assert cfg.data.batch_size == 1 and cfg.trainer.cpus_per_worker == 0.25


def test_every_numeric_engine_key_declares_a_range():
    """A new numeric key comes with its valid range."""
    missing = []

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
            base = args[0]
            if dataclasses.is_dataclass(base):
                walk(base, f"{prefix}{f.name}.")
            elif typing.get_origin(base) is dict:
                item = typing.get_args(base)[1]
                if dataclasses.is_dataclass(item):
                    walk(item, f"{prefix}{f.name}.<name>.")
            elif (base in (int, float) or typing.get_args(base) in ((int,), (float,))) and RANGE not in f.metadata:
                missing.append(f"{prefix}{f.name}")

    walk(DistrecConfig, "")
    assert missing == []


@pytest.mark.parametrize("override,message", [
    ("data.batch_size=0", "error: config key 'data.batch_size' in command line (data.batch_size=0): "
                          "0 is out of range; expected >= 1"),
    ("dense.optimizer=adamm", "error: config key 'dense.optimizer' in command line (dense.optimizer=adamm): "
                              "'adamm' is not one of adam, adamw, sgd, adagrad"),
])
def test_distrec_run_refuses_a_bad_value_before_ray(tmp_path, override, message):
    """The CLI in a fresh process: one error line, exit code 2, no traceback, Ray never imported."""
    probe = ("import sys; from distrec.cli import main; code = main(sys.argv[1:]); "
             "print('ray imported:', 'ray' in sys.modules); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", probe, "run", SMOKE, f"run.output_dir={tmp_path}", override],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == message
    assert "ray imported: False" in result.stdout
    assert not any(tmp_path.iterdir())
