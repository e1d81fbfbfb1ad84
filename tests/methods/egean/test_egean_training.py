"""2-worker training (real TorchRec sharding over gloo) of EGEAN and the ESMM/ESCM² baselines,
on generated ground-truth data and on the real Ali-CCP sample."""

import json
import math

from egean_workers import train_variants
from omegaconf import OmegaConf

from distrec.data.importers import IMPORTERS
from distrec.methods import load_config, prepare_data
from distrec.train.local_spawn import spawn

VARIANTS = ["egean", "esmm", "escm2_ipw", "escm2_dr"]


def smoke_config(tmp_path, *overrides):
    data = tmp_path / "data"
    return load_config("configs/egean/smoke.yaml", [
        f"run.output_dir={tmp_path / 'runs'}", f"data.train={data / 'train'}", f"data.valid={data / 'valid'}",
        f"data.schema={data / 'schema.yaml'}", "method.ground_truth.rows=3000",
        "method.ground_truth.valid_rows=1000", "method.ground_truth.rows_per_file=1500",
        "data.batch_size=128", "trainer.epochs=1", "trainer.log_every=1000", "metrics.tensorboard=false",
        *overrides,
    ])


def test_two_workers_train_each_variant_and_report_entire_space_metrics(tmp_path):
    cfg = smoke_config(tmp_path)
    prepare_data(cfg)  # the recipe's hook generates the ground-truth splits and schema
    assert (tmp_path / "data" / "schema.yaml").is_file()
    runs = [{"model.variant": v, "run.name": v} for v in VARIANTS]
    per_rank = spawn(train_variants, 2, OmegaConf.to_container(cfg, resolve=True), runs)
    def without_timing(results):
        return [{k: v for k, v in m.items() if k != "samples_per_s"} for m in results]

    # metrics are exact over both ranks' rows: identical on each rank
    assert without_timing(per_rank[0]) == without_timing(per_rank[1])

    for variant, metrics in zip(VARIANTS, per_rank[0]):
        assert metrics["epoch_rows"] == 3000 and metrics["ctr_num_rows"] == 1000, variant
        assert metrics["cvr_num_rows"] < 1000  # CVR AUC over clicked impressions only
        assert metrics["ctr_auc"] > 0.7, (variant, metrics)  # the click signal is strong
        for key in ("cvr_auc", "ctcvr_auc", "cvr_exposure_auc", "cvr_bias_exposure", "cvr_bias_click"):
            assert math.isfinite(metrics[key]), (variant, key)
        truth = metrics["cvr_mean_true_exposure"]
        assert abs(metrics["cvr_bias_exposure"] - (metrics["cvr_mean_pred_exposure"] - truth)) < 1e-9
        run = tmp_path / "runs" / variant
        assert (run / "checkpoints" / "latest").is_file()
        logged = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        assert logged["cvr_exposure_auc"] == metrics["cvr_exposure_auc"]
    # same data and truth for all: the validation set's true mean CVR is shared
    assert len({m["cvr_mean_true_exposure"] for m in per_rank[0]}) == 1


def test_two_workers_train_egean_on_the_real_ali_ccp_sample(tmp_path, shared_data):
    data = tmp_path / "ali-ccp"
    IMPORTERS["aliccp"](str(shared_data / "ali-ccp"), str(data), progress_every_s=1e9)
    cfg = load_config("configs/egean/ali-ccp-sample.yaml", [
        f"run.output_dir={tmp_path / 'runs'}", f"data.train={data / 'train'}", f"data.valid={data / 'valid'}",
        f"data.schema={data / 'schema.yaml'}", "metrics.tensorboard=false", "trainer.log_every=1000",
    ])
    (metrics,) = spawn(train_variants, 2, OmegaConf.to_container(cfg, resolve=True), [{}])[0]
    assert metrics["epoch_rows"] == 100 and metrics["ctr_num_rows"] == 50
    assert 0.0 <= metrics["ctr_auc"] <= 1.0 and math.isfinite(metrics["ctcvr_logloss"])
    assert "cvr_bias_exposure" not in metrics  # real data: no ground-truth columns, no exposure bias


def test_egean_under_deepspeed_zero2_follows_the_ddp_run(tmp_path):
    cfg = smoke_config(tmp_path, "model.variant=egean")
    prepare_data(cfg)
    runs = [{"run.name": "ddp"}, {"run.name": "zero2", "dense.backend": "deepspeed", "dense.zero_stage": 2}]
    ddp, zero2 = spawn(train_variants, 2, OmegaConf.to_container(cfg, resolve=True), runs)[0]
    assert ddp["epoch_rows"] == zero2["epoch_rows"] == 3000
    # same data, seed and Adam: the dense part trains the same under ZeRO-2 as under DDP
    for key in ("ctr_auc", "cvr_auc", "ctcvr_auc", "ctcvr_logloss", "cvr_bias_exposure"):
        assert abs(ddp[key] - zero2[key]) < 1e-3, (key, ddp[key], zero2[key])
    assert (tmp_path / "runs" / "zero2" / "checkpoints" / "latest").is_file()
