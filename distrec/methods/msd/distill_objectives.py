"""What the student learns from the teacher's knowledge: one class per ``distill.mode``.

Each objective owns the student module handed to DeepSpeed and the tokenised data of this rank's
entities; ``loss(engine, idx)`` is the training loss of those rows,
``per_entity(engine, idx)`` the same loss per row (no grad), ``probe`` the semantic vectors of the
first rows (compared with the saved checkpoint), ``hf_model(module)`` what is saved.

- ``FeatureObjective`` (ours, encoder student): the pooled vector of the raw input regressed onto
  the vector of the knowledge text from a frozen copy of the starting encoder (cosine + MSE).
- ``TokenObjective`` (the paper's, causal student): the student learns to write the knowledge
  text after the raw input, token by token (cross-entropy on the knowledge tokens only).
"""

from __future__ import annotations

import torch
from torch import nn

from distrec.methods.msd.student import (
    StudentEncoder,
    load_causal_student,
    load_tokenizer,
    mean_pool,
    tokenize,
)

IGNORE = -100  # label of tokens without a loss (raw input, padding)


def feature_loss_per_row(student: torch.Tensor, target: torch.Tensor, cosine_weight: float,
                         mse_weight: float) -> torch.Tensor:
    cos = (student * target).sum(-1)  # both unit vectors
    mse = ((student - target) ** 2).sum(-1)
    return cosine_weight * (1 - cos) + mse_weight * mse


class FeatureObjective:
    def __init__(self, scfg, dcfg, raws: list[str], texts: list[str]) -> None:
        self.module = StudentEncoder(scfg.path)
        self.tokenizer = load_tokenizer(self.module.path)
        self.raw_ids, self.raw_mask = tokenize(self.tokenizer, raws, scfg.max_length)
        know_ids, know_mask = tokenize(self.tokenizer, texts, dcfg.knowledge_max_length)
        self.targets = StudentEncoder(scfg.path).encode(know_ids, know_mask)  # frozen copy of the start
        self.weights = (dcfg.cosine_weight, dcfg.mse_weight)

    def loss(self, engine, idx: torch.Tensor) -> torch.Tensor:
        return self.per_entity(engine, idx).mean()

    def per_entity(self, engine, idx: torch.Tensor) -> torch.Tensor:
        vectors = engine(self.raw_ids[idx], self.raw_mask[idx])
        return feature_loss_per_row(vectors, self.targets[idx], *self.weights)

    def probe(self, engine, rows: int) -> list:
        return engine(self.raw_ids[:rows], self.raw_mask[:rows]).tolist()

    @staticmethod
    def hf_model(module: nn.Module) -> nn.Module:
        return module.encoder


class CausalStudent(nn.Module):
    """A causal LM: ``forward(ids, mask, labels)`` is the token loss; without labels, the unit
    vector of the mean-pooled last hidden state (what ``StudentEncoder`` computes after reload)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)
        logits = self.lm(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        targets = labels[:, 1:]
        per_token = nn.functional.cross_entropy(logits.transpose(1, 2).float(), targets,
                                                ignore_index=IGNORE, reduction="none")
        counted = (targets != IGNORE).sum(1)
        return per_token.sum(1) / counted.clamp(min=1)  # per row: mean over its knowledge tokens


def token_sequences(tokenizer, raws: list[str], texts: list[str], raw_len: int,
                    text_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw input (≤ raw_len tokens) then knowledge text (≤ text_len tokens) and EOS, padded on the
    right to one length; labels are the knowledge tokens + EOS, IGNORE elsewhere."""
    length = raw_len + text_len + 1
    ids = torch.full((len(raws), length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE)
    raw_tok = tokenizer(list(raws), truncation=True, max_length=raw_len, add_special_tokens=False)["input_ids"]
    text_tok = tokenizer(list(texts), truncation=True, max_length=text_len, add_special_tokens=False)["input_ids"]
    for row, (prompt, answer) in enumerate(zip(raw_tok, text_tok)):
        answer = answer + [tokenizer.eos_token_id]
        n_prompt, n_all = len(prompt), len(prompt) + len(answer)
        ids[row, :n_all] = torch.tensor(prompt + answer)
        mask[row, :n_all] = 1
        labels[row, n_prompt:n_all] = torch.tensor(answer)
    return ids, mask, labels


class TokenObjective:
    def __init__(self, scfg, dcfg, raws: list[str], texts: list[str]) -> None:
        lm, self.tokenizer = load_causal_student(scfg.path, scfg.gguf_file)
        for module in lm.modules():  # same vectors in training and evaluation mode
            if isinstance(module, nn.Dropout):
                module.p = 0.0
        self.module = CausalStudent(lm)
        self.ids, self.mask, self.labels = token_sequences(self.tokenizer, raws, texts, scfg.max_length,
                                                           dcfg.knowledge_max_length)
        self.raws, self.max_length = raws, scfg.max_length

    def loss(self, engine, idx: torch.Tensor) -> torch.Tensor:
        return self.per_entity(engine, idx).mean()

    def per_entity(self, engine, idx: torch.Tensor) -> torch.Tensor:
        return engine(self.ids[idx], self.mask[idx], self.labels[idx])

    def probe(self, engine, rows: int) -> list:
        return engine(*tokenize(self.tokenizer, self.raws[:rows], self.max_length)).tolist()

    @staticmethod
    def hf_model(module: nn.Module) -> nn.Module:
        return module.lm


OBJECTIVES = {("feature", "encoder"): FeatureObjective, ("token", "causal"): TokenObjective}
