"""The one training loop (distrec/train/loop.py): evaluation cadence, early stopping with the best
checkpoint, data.test scored with the best weights, and a clock that counts training only."""

import json

import pytest
from engine_workers import loop_with_slow_evaluation
from omegaconf import OmegaConf
from test_sharded_training import tiny_ctr_config

from distrec.train.local_spawn import spawn

SLEEP_S = 0.4


def run_loop(tmp_path, name, *overrides, sleep_s=0.0):
    cfg = tiny_ctr_config(tmp_path, f"run.name={name}", "data.batch_size=32", "trainer.epochs=2",
                          "trainer.eval_every=6", "trainer.eval_at_epoch_end=false",
                          # the validation split doubles as the test split: the test metrics must
                          # then equal the best evaluation's, which proves the best weights reload
                          f"data.test={tmp_path / 'data' / 'valid'}", *overrides)
    summary = spawn(loop_with_slow_evaluation, 2, OmegaConf.to_container(cfg, resolve=True), sleep_s)[0]
    return summary, tmp_path / "runs" / name


def test_eval_cadence_best_checkpoint_test_split_and_fair_clock(tmp_path):
    summary, run_dir = run_loop(tmp_path, "cadence", "trainer.early_stopping.metric=logloss",
                                "trainer.early_stopping.mode=min", sleep_s=SLEEP_S)
    steps_per_epoch = 1024 // (32 * 2)
    total = 2 * steps_per_epoch
    expected = list(range(6, total + 1, 6)) + ([total] if total % 6 else [])
    assert [p["step"] for p in summary["curve"]] == expected
    assert summary["steps"] == total and not summary["stopped_early"]

    losses = [p["logloss"] for p in summary["curve"]]
    best = losses.index(min(losses))
    assert summary["best_valid"] == summary["curve"][best] and summary["best_step"] == expected[best]
    assert json.loads((run_dir / "summary.json").read_text())["best_step"] == expected[best]
    for key in ("auc", "logloss", "gauc"):
        assert summary["test"][key] == pytest.approx(summary["curve"][best][key], rel=1e-6), key

    # the clock: evaluation (slowed by SLEEP_S each) and checkpoint I/O are not training time
    evaluations = len(expected)
    assert summary["eval_s"] >= evaluations * SLEEP_S
    assert summary["checkpoint_s"] > 0
    assert summary["train_s"] + summary["eval_s"] + summary["checkpoint_s"] <= summary["wall_s"]
    assert summary["time_to_best_s"] == summary["curve"][best]["train_s"] <= summary["train_s"]
    assert all(a["train_s"] < b["train_s"] for a, b in zip(summary["curve"], summary["curve"][1:]))
    # a second evaluation's clock reading excludes the first evaluation's sleep
    assert summary["curve"][1]["train_s"] < summary["wall_s"] - evaluations * SLEEP_S

    # train loss and evaluations reach metrics.jsonl; the last line is the run's final record
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in r for r in records)
    assert [r["step"] for r in records if "auc" in r and "test/auc" not in r] == expected
    assert records[-1]["test/auc"] == summary["test"]["auc"] == summary["final"]["test/auc"]


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    # "countdown" = -step gets worse at every evaluation: the first one stays best, and with
    # patience 2 the run stops at the third evaluation (step 18 of 32)
    summary, run_dir = run_loop(tmp_path, "patience", "trainer.early_stopping.metric=countdown",
                                "trainer.early_stopping.mode=max", "trainer.early_stopping.patience=2")
    assert summary["stopped_early"] and summary["steps"] == 18
    assert [p["step"] for p in summary["curve"]] == [6, 12, 18]
    assert summary["best_step"] == 6 and summary["best_checkpoint"].endswith("step-000000006")
    assert summary["test"]["auc"] == pytest.approx(summary["curve"][0]["auc"], rel=1e-6)


def test_an_unknown_early_stopping_metric_names_the_evaluated_ones():
    from types import SimpleNamespace

    from distrec.errors import ConfigError
    from distrec.train.loop import LoopSchedule, TrainLoop

    loop = TrainLoop(SimpleNamespace(resumed_meta={}), None, LoopSchedule(epochs=1, early_stopping_metric="aucc"))
    with pytest.raises(ConfigError, match=r"trainer.early_stopping.metric='aucc' is not among the "
                                          r"evaluation's metrics: \['auc', 'logloss'\]"):
        loop._track_best({"auc": 0.7, "logloss": 0.5})
