"""Distillation on the engine's one loop (DeepSpeed ZeRO-1, 2 gloo workers): a worker killed
mid-run (``trainer.fail_at_step``, a real process exit), and the same command run again, resumes
from the last checkpoint and ends with the very student of an uninterrupted run; the loop's train
loss and evaluations reach metrics.jsonl. The student is a tiny random BERT with MiniLM's
tokenizer (fast steps, small checkpoints)."""

import json

import pytest
import torch
from msd_workers import distill
from omegaconf import OmegaConf
from safetensors.torch import load_file
from test_msd_knowledge import slice_config

from distrec.methods.msd.data import ensure_imported
from distrec.methods.msd.distill import EntityBatches, trajectory_inputs
from distrec.methods.msd.knowledge import run_knowledge_job
from distrec.methods.msd.student import default_student_path, load_tokenizer
from distrec.train.local_spawn import spawn

# 40 items + 30 users = 70 entities, 35 per worker: 5 steps of 8 per epoch, 10 steps in all;
# evaluations (each with a checkpoint) at steps 3, 6, 9 and after the last, checkpoints at 4 and 8
FAST = ["method.knowledge.engine=local", "method.knowledge.limit=40", "method.student.max_length=8",
        "method.distill.knowledge_max_length=16", "method.distill.batch_size=8", "method.distill.epochs=2",
        "method.distill.max_steps=-1", "method.distill.lr=3e-3", "method.distill.checkpoint_every=4",
        "method.distill.eval_every=3", "method.distill.log_every=1"]


def tiny_bert(path) -> str:
    from transformers import BertConfig, BertModel

    tokenizer = load_tokenizer(default_student_path())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_killed_distillation_resumes_to_the_uninterrupted_student(tmp_path, shared_data):
    cfg = slice_config(tmp_path, shared_data, *FAST, f"method.student.path={tiny_bert(tmp_path / 'tiny-bert')}")
    ensure_imported(cfg)
    run_knowledge_job(cfg)

    def run(name, *overrides):
        plain = OmegaConf.to_container(OmegaConf.merge(cfg, OmegaConf.from_dotlist([
            f"run.output_dir={tmp_path}/{name}", f"method.distill.output={tmp_path}/{name}/student", *overrides])),
            resolve=True)
        return spawn(distill, 2, plain)[0]

    calm = run("calm")
    # rank 1 dies after step 7 (epoch 1, batch 2): the last checkpoint is step 6's (mid-epoch)
    with pytest.raises(Exception, match="exit|signal|terminated|failed"):
        run("drill", "trainer.fail_at_step=7")
    drill_dir = tmp_path / "drill" / cfg.run.name
    assert (drill_dir / ".failed-at-step-7").exists()
    assert (drill_dir / "distill" / "checkpoints" / "latest").read_text() == "step-000000006"
    drill = run("drill", "trainer.fail_at_step=7")  # the same command again: resumes

    # exact: the same batches in the same order, the optimizer state restored from DeepSpeed's
    # checkpoint, and no random numbers drawn in training (the student's dropout is off)
    calm_weights = load_file(tmp_path / "calm" / "student" / "model.safetensors")
    drill_weights = load_file(tmp_path / "drill" / "student" / "model.safetensors")
    assert calm_weights.keys() == drill_weights.keys()
    assert all(torch.equal(calm_weights[k], drill_weights[k]) for k in calm_weights)
    for key in ("steps", "distill_loss_before", "distill_loss_after", "train_losses"):
        assert drill[key] == calm[key], key
    assert calm["steps"] == 10 and calm["distill_loss_after"] < calm["distill_loss_before"]
    saved = json.loads((tmp_path / "drill" / "student" / "distill_metrics.json").read_text())
    assert saved["distill_loss_after"] == calm["distill_loss_after"] and len(saved["train_losses"]) == 10

    # metrics.jsonl: every step's train loss once (the steps after the checkpoint logged again,
    # not twice), the evaluations, the final losses
    logged = records(drill_dir)
    assert [r["step"] for r in logged if "train/loss" in r] == list(range(1, 11))
    assert [r["train/loss"] for r in logged if "train/loss" in r] == calm["train_losses"]
    assert [r["step"] for r in logged if "distill_loss" in r] == [3, 6, 9, 10]
    assert logged[-1]["distill_loss_after"] == calm["distill_loss_after"]
    summary = json.loads((drill_dir / "summary.json").read_text())
    assert [r["step"] for r in summary["curve"]] == [3, 6, 9, 10] and summary["final"]["step"] == 10
    assert summary["train_s"] > 0


def test_entity_batches_resume_mid_epoch_in_the_same_order():
    batches = EntityBatches(count=21, batch_size=4, seed=7)
    assert batches.steps(0) == batches.steps(1) == 6
    epochs = [list(batches.batches(e)) for e in range(2)]
    for epoch in epochs:
        assert sorted(torch.cat(epoch).tolist()) == list(range(21))  # every entity once an epoch
    assert not torch.equal(torch.cat(epochs[0]), torch.cat(epochs[1]))  # a fresh order each epoch
    resumed = list(batches.batches(1, start_batch=4))
    assert len(resumed) == 2 and all(torch.equal(a, b) for a, b in zip(resumed, epochs[1][4:]))


def test_a_checkpoint_resumes_only_the_same_distillation(tmp_path, shared_data):
    cfg = slice_config(tmp_path, shared_data)
    pairs = (["Heat | 1995"], ["crime"])

    def inputs(*overrides, world=2, data=pairs):
        return trajectory_inputs(OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides))), world, *data)

    same = inputs()
    # the schedule's length and output may change: a longer run goes on from the checkpoint
    assert inputs("method.distill.max_steps=99", "method.distill.epochs=9", "method.distill.checkpoint_every=1",
                  "method.distill.output=elsewhere") == same
    assert inputs("method.distill.lr=1e-3") != same
    assert inputs("method.student.max_length=9") != same
    assert inputs("run.seed=5") != same
    assert inputs(world=4) != same
    assert inputs(data=(["Heat | 1995"], ["thriller"])) != same  # knowledge from another teacher
