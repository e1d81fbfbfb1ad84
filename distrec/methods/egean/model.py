"""EGEAN and its baselines (ESMM, ESCM²-IPS, ESCM²-DR, naive CVR) on one shared embedding.

``sparse``: the shared TorchRec EmbeddingBagCollection (sharded like any table). ``dense``:
everything else — the dense-feature field, per-task LoRA and PEPNet gates, the CTR (propensity),
CVR and imputation towers, the exposure head — so DDP or DeepSpeed trains all of it.

Per sample, the shared embedding E is the concatenation of every field's pooled vector (plus a
projection of the dense features). EGEAN personalises it per task t ∈ {ctr, cvr, imputation}:
E_t = LoRA_t(E), O_t = δ_t ⊙ E_t with δ_t = gate(task ⊕ stopgrad(E_t)), and tower t's hidden
layers are scaled by gates of stopgrad(O_t). The baselines feed E to plain towers.
"""

from __future__ import annotations

import torch
from torch import nn

from distrec.data.batch import RecBatch
from distrec.methods.egean.modules import (
    EmbeddingGate,
    EmbeddingLora,
    ExposureHead,
    Tower,
    TowerGates,
)
from distrec.methods.egean.objective import EntireSpaceObjective


class TaskBranch(nn.Module):
    """One task's personalisation (LoRA, embedding gate, tower gates) and tower."""

    def __init__(self, width: int, model_cfg, personalised: bool) -> None:
        super().__init__()
        self.tower = Tower(width, list(model_cfg.tower_arch), model_cfg.leaky_relu_slope)
        use_lora = personalised and model_cfg.lora_rank > 0
        use_gates = personalised and model_cfg.gates
        self.lora = EmbeddingLora(width, model_cfg.lora_rank, model_cfg.lora_alpha) if use_lora else None
        self.embedding_gate = (
            EmbeddingGate(width, model_cfg.task_embedding_dim, model_cfg.gate_hidden, model_cfg.gate_scale)
            if use_gates else None
        )
        self.tower_gates = (
            TowerGates(width, self.tower.widths, model_cfg.gate_hidden, model_cfg.gate_scale)
            if use_gates else None
        )

    def forward(self, shared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tower output [B], E_t, O_t) for the flattened shared embedding [B, width]."""
        personal = self.lora(shared) if self.lora is not None else shared
        if self.embedding_gate is None:
            return self.tower(personal), personal, personal
        gated, _ = self.embedding_gate(personal)
        return self.tower(gated, self.tower_gates(gated)), personal, gated


class EgeanDenseNet(nn.Module):
    def __init__(self, num_sparse: int, num_dense: int, dim: int, model_cfg, method_cfg,
                 shuffle_groups: list[list[int]]) -> None:
        super().__init__()
        self.variant = variant = str(model_cfg.variant)
        self.dense_field = nn.Linear(num_dense, dim) if num_dense else None
        self.num_fields = num_sparse + (1 if num_dense else 0)
        width = self.num_fields * dim
        personalised = variant == "egean"
        tasks = ["ctr", "cvr"] + (["imputation"] if variant in ("egean", "escm2_dr") else [])
        self.branches = nn.ModuleDict({t: TaskBranch(width, model_cfg, personalised) for t in tasks})
        # naive_cvr is a CVR model of the clicked rows: unless told otherwise its CTR head reads a
        # stop-gradient copy, so only clicked rows train the shared embedding
        self.detached_tasks = (
            {"ctr"} if variant == "naive_cvr" and not method_cfg.naive_ctr_trains_embedding else set()
        )
        self.exposure = (
            ExposureHead(self.num_fields, dim, list(model_cfg.exposure_arch), model_cfg.leaky_relu_slope,
                         shuffle_groups)
            if personalised and method_cfg.weights.exposure > 0 else None
        )

    def forward(self, dense: torch.Tensor, embeddings: list[torch.Tensor], weights: torch.Tensor) -> dict:
        if self.dense_field is not None:
            embeddings = [*embeddings, self.dense_field(dense)]
        fields = torch.stack(embeddings, dim=1)  # [B, F, D]
        shared = fields.flatten(1)
        out = {"shared": shared}
        for task, branch in self.branches.items():
            source = shared.detach() if task in self.detached_tasks else shared
            out[f"{task}_out"], out[f"{task}_lora"], out[f"{task}_gated"] = branch(source)
        if self.exposure is not None and self.training:  # a training signal only: skipped in evaluation
            out["exposure_loss"] = self.exposure.loss(fields, (weights > 0).to(fields.dtype))
        return out


class EgeanModel(nn.Module):
    """``forward(batch) -> (loss, outputs)`` for every variant.

    Both children after the lookup (``dense``, ``objective``) are leaf modules to the FX tracer
    of TorchRec's train pipeline, so the data-dependent parts of the losses stay out of the trace."""

    def __init__(self, sparse: nn.Module, dense: EgeanDenseNet, feature_names: list[str],
                 objective: EntireSpaceObjective) -> None:
        super().__init__()
        self.sparse = sparse
        self.dense = dense
        self.objective = objective
        self.feature_names = feature_names

    def forward(self, batch: RecBatch):
        pooled = self.sparse(batch.sparse).to_dict()
        out = self.dense(batch.dense, [pooled[name] for name in self.feature_names], batch.weights)
        return self.objective(out, batch.labels, batch.weights, batch.group_ids)
