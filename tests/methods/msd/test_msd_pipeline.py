"""MSD end to end on a slice of ml-100k, 2 workers: knowledge (Ray Data) -> distillation
(DeepSpeed, 2 gloo processes) -> CTR training with the student inside (2 gloo processes)."""

import torch
from msd_workers import distill, train_and_compare
from omegaconf import OmegaConf
from test_msd_knowledge import slice_config

from distrec.methods.msd.data import ensure_imported
from distrec.methods.msd.knowledge import read_knowledge, run_knowledge_job
from distrec.methods.msd.student import StudentEncoder, load_tokenizer, tokenize
from distrec.train.local_spawn import spawn

FAST = ["method.student.max_length=8", "method.distill.knowledge_max_length=32",
        "method.distill.batch_size=16", "method.distill.max_steps=6", "method.distill.epochs=1",
        "method.distill.lr=2e-4", "method.semantics.cache_min_freq=2", "method.semantics.cache_refresh_every=3",
        "data.batch_size=32", "data.eval_batch_size=256", "trainer.max_steps=6",
        "method.semantics.lora_rank=4"]


def test_knowledge_distill_ctr_on_ml100k_slice(tmp_path, shared_data, ray_cluster):
    cfg = slice_config(tmp_path, shared_data, "method.knowledge.engine=ray", "method.knowledge.limit=120",
                       "method.knowledge.part_size=50", *FAST)
    ensure_imported(cfg)

    # knowledge: a Ray Data job, one record per entity and level; a rerun writes nothing twice
    first = run_knowledge_job(cfg)
    assert first["written"] == 120 + 30
    assert run_knowledge_job(cfg)["written"] == 0
    keys = [(r["level"], r["id"]) for r in read_knowledge(cfg.method.knowledge.output).to_pylist()]
    assert len(keys) == len(set(keys)) == 150

    # distillation under DeepSpeed on 2 workers: the loss falls; the checkpoint reloads exactly
    plain = OmegaConf.to_container(cfg, resolve=True)
    result = spawn(distill, 2, plain)[0]
    assert result["distill_loss_after"] < result["distill_loss_before"]
    student = StudentEncoder(cfg.method.distill.output)
    ids, mask = tokenize(load_tokenizer(student.path), result["probe"]["texts"], cfg.method.student.max_length)
    with torch.no_grad():
        torch.testing.assert_close(student(ids, mask), torch.tensor(result["probe"]["vectors"]), rtol=0, atol=1e-6)

    # CTR with the student inside: the frozen student stays bit-identical; LoRA, adapters and the
    # tower learn; validation AUC is reported
    out = spawn(train_and_compare, 2, plain)[0]
    changed, trainable = out["changed"], out["trainable"]
    frozen = [n for n in changed if n.startswith("student.") and "lora_" not in n]
    assert frozen and not any(changed[n] or trainable[n] for n in frozen)
    assert any(changed[n] for n in changed if "lora_" in n)
    for part in ("item_adapter.", "history_adapter.", "user_adapter.", "ctr."):
        assert any(changed[n] for n in changed if n.startswith(part)), part
    assert 0.0 <= out["metrics"]["auc"] <= 1.0 and out["metrics"]["logloss"] > 0
