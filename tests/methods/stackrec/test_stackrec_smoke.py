"""2-worker StackRec smoke run (TS, 2 -> 4 blocks): train, stack the distributed checkpoint,
resume from it on 2 workers, report metrics; plus the from-scratch baseline and the report."""

import json

import pytest
import torch

from distrec.methods import load_config, prepare_data
from distrec.methods.stackrec.report import PLOT, write_report
from distrec.methods.stackrec.scenario import run_variant, spawn_launcher
from distrec.methods.stackrec.stacking import block_map, read_model_state
from distrec.train.checkpoint import read_meta

EMBEDDINGS = "sparse.embeddings.item_seq.weight"


def smoke_overrides(tmp_path, data, *overrides) -> list[str]:
    """configs/stackrec/smoke.yaml on 200 generated sequences under ``data``, runs under tmp_path."""
    return [f"run.output_dir={tmp_path / 'runs'}", f"data.schema={data}/schema.yaml", f"data.train={data}/train",
            f"data.valid={data}/valid", f"data.test={data}/test", "method.synthetic.num_sequences=200",
            "trainer.log_every=100", *overrides]


def smoke_config(tmp_path, data, *overrides):
    return load_config("configs/stackrec/smoke.yaml", smoke_overrides(tmp_path, data, *overrides))


@pytest.mark.timeout(420)
def test_ts_smoke_trains_stacks_resumes_and_reports(tmp_path):
    cfg = smoke_config(tmp_path, tmp_path / "data", "method.scratch_max_steps=10")
    prepare_data(cfg)
    stacked = run_variant(cfg, "adjacent", spawn_launcher)

    stage0, stage1 = (r["summary"] for r in stacked["stages"])
    assert [r["blocks"] for r in stacked["stages"]] == [2, 4] and stacked["steps"] == [10, 10]
    source = stage0["best_checkpoint"]
    assert read_meta(source)["world_size"] == 2  # written by the distributed stage
    init = stacked["stages"][1]["init_from"]
    assert init.endswith("stage-1/stacked/checkpoints/step-000000000")
    old, new = read_model_state(source), read_model_state(init)
    for i, src in enumerate(block_map(2, "adjacent")):
        assert torch.equal(new[f"dense.body.blocks.{i}.conv1.conv.weight"], old[f"dense.body.blocks.{src}.conv1.conv.weight"])
        assert float(new[f"dense.body.blocks.{i}.alpha"].abs()) == 0.0
    assert torch.equal(new[EMBEDDINGS], old[EMBEDDINGS])
    # stage 1 ran on 2 workers from the stacked weights: trained away from them, but not far
    resumed = read_model_state(stage1["best_checkpoint"])
    assert read_meta(stage1["best_checkpoint"])["world_size"] == 2
    assert not torch.equal(resumed[EMBEDDINGS], new[EMBEDDINGS])
    cos = torch.nn.functional.cosine_similarity(resumed[EMBEDDINGS].flatten(), new[EMBEDDINGS].flatten(), dim=0)
    assert cos > 0.5  # an unrelated random table would be near 0
    assert stage1["best_valid"]["num_rows"] == 20 and stage1["test"]["num_rows"] == 20
    for name in ("mrr@5", "hr@5", "ndcg@5", "mrr@10", "hr@10", "ndcg@10"):
        assert 0.0 <= stacked["test"][name] <= 1.0
    # the fair clock: stage 0's training in full, the stacking, stage 1's training up to its best;
    # evaluation and checkpoint time are summed apart
    assert stacked["time_to_best_s"] == pytest.approx(
        stage0["train_s"] + stacked["stages"][1]["stack_s"] + stage1["time_to_best_s"])
    assert stacked["eval_s"] == pytest.approx(stage0["eval_s"] + stage1["eval_s"]) and stacked["eval_s"] > 0
    assert stacked["checkpoint_s"] == pytest.approx(stage0["checkpoint_s"] + stage1["checkpoint_s"])
    assert stacked["checkpoint_s"] > 0
    assert stacked["curve"][-1]["train_s"] == pytest.approx(stage0["train_s"] + stacked["stages"][1]["stack_s"]
                                                            + stage1["curve"][-1]["train_s"])

    # a rerun (e.g. after the driver died) reuses the finished stages: nothing trains again
    def no_training(stage_cfg):
        raise AssertionError(f"{stage_cfg.run.name} trained again")

    assert run_variant(cfg, "adjacent", no_training)["time_to_best_s"] == stacked["time_to_best_s"]
    longer = cfg.copy()
    longer.method.stages[1].max_steps = 11  # stage 1 changed: stage 0 is reused, stage 1 runs again
    relaunched = []
    with pytest.raises(AssertionError, match="stage-1 trained again"):
        run_variant(longer, "adjacent", lambda c: relaunched.append(c.run.name) or no_training(c))
    assert relaunched == ["stage-1"]

    scratch = run_variant(cfg, "scratch", spawn_launcher)
    assert [r["blocks"] for r in scratch["stages"]] == [4] and scratch["steps"] == [10]
    report = write_report(cfg, {"scratch": {0: scratch}, "adjacent": {0: stacked}}, str(tmp_path / "report"),
                          "test machine")
    row = next(r for r in report["variants"] if r["variant"] == "adjacent")
    assert row["speedup_vs_scratch"] == pytest.approx(scratch["time_to_best_s"] / stacked["time_to_best_s"])
    assert row["vs_scratch"]["n"] == 1 and row["vs_scratch"]["se"] is None  # one seed: no spread
    assert json.loads((tmp_path / "report" / "report.json").read_text())["variants"][1]["stages"] == [2, 4]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| adjacent | 1 | 2→4 |" in markdown
    assert f"| {stacked['eval_s']:.1f} | {stacked['checkpoint_s']:.1f} |" in markdown
    assert (tmp_path / "report" / PLOT).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.timeout(420)
def test_tf_trains_the_source_stage_then_stacks_onto_the_target_and_counts_only_the_target(tmp_path):
    from omegaconf import OmegaConf

    from distrec.methods.stackrec.scenario import plan_stages

    source, target = tmp_path / "source", tmp_path / "target"
    cfg = smoke_config(tmp_path, target, "method.scenario=tf",
                       f"method.stages=[{{blocks: 2, max_steps: 10, train: {source}/train, valid: {source}/valid}}, "
                       f"{{blocks: 4, max_steps: 10}}]")
    prepare_data(cfg)  # the target task
    source_cfg = OmegaConf.merge(cfg, {"data": {"schema": f"{source}/schema.yaml", "train": f"{source}/train",
                                                "valid": f"{source}/valid", "test": f"{source}/test"},
                                       "method": {"synthetic": {"seed": 7, "p_long": 0.3}}})
    prepare_data(source_cfg)  # the source task: same catalogue, other sequences and rule strength

    stages = plan_stages(cfg, "adjacent")
    assert [(s.train, s.valid, s.counted) for s in stages] == [
        (f"{source}/train", f"{source}/valid", False), (f"{target}/train", f"{target}/valid", True)]
    scratch_plan = plan_stages(cfg, "scratch")
    assert [(s.blocks, s.train, s.max_steps) for s in scratch_plan] == [(4, f"{target}/train", 20)]

    stacked = run_variant(cfg, "adjacent", spawn_launcher)
    stage0, stage1 = (r["summary"] for r in stacked["stages"])
    assert stacked["stages"][1]["init_from"].endswith("stage-1/stacked/checkpoints/step-000000000")
    # the source stage's time is not counted; the target stage's is, up to its best evaluation
    assert stacked["time_to_best_s"] == pytest.approx(stacked["stages"][1]["stack_s"] + stage1["time_to_best_s"])
    assert stacked["time_to_best_all_stages_s"] >= stacked["time_to_best_s"] + stage0["train_s"]
    assert {p["stage"] for p in stacked["curve"]} == {1}
    assert stage1["test"]["num_rows"] == 20 and 0.0 <= stacked["test"]["mrr@5"] <= 1.0


@pytest.mark.timeout(420)
def test_an_interrupted_stage_resumes_from_its_last_evaluation(tmp_path):
    from distrec.train.checkpoint import latest_checkpoint
    from distrec.train.loop import LOOP_STATE

    cfg = smoke_config(tmp_path, tmp_path / "data", "method.stages=[{blocks: 2, max_steps: 15}]",
                       "trainer.early_stopping.patience=10", "trainer.fail_at_step=7")
    prepare_data(cfg)
    with pytest.raises(Exception):  # the last rank dies at step 7, after the evaluation at step 5
        run_variant(cfg, "adjacent", spawn_launcher)
    stage_dir = tmp_path / "runs" / "stackrec-smoke" / "adjacent" / "stage-0"
    saved = read_meta(latest_checkpoint(str(stage_dir)))
    assert saved["step"] == 5 and [p["step"] for p in saved[LOOP_STATE]["curve"]] == [5]

    result = run_variant(cfg, "adjacent", spawn_launcher)  # the rerun resumes stage 0 at step 5
    summary = result["stages"][0]["summary"]
    assert summary["steps"] == 15 and [p["step"] for p in summary["curve"]] == [5, 10, 15]
    assert summary["curve"][0] == saved[LOOP_STATE]["curve"][0]  # carried over, not re-measured
    assert summary["train_s"] >= saved[LOOP_STATE]["train_s"]
    assert summary["test"]["num_rows"] == 20
