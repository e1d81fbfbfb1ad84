"""EGEAN's building blocks on the shared embedding: prediction towers, per-task LoRA, PEPNet
gates and the exposure head."""

from __future__ import annotations

import torch
from torch import nn

from distrec.methods.egean.losses import masked_bce

# --- Prediction towers (CTR, CVR, imputation, exposure): LeakyReLU MLPs ending in one output,
# whose hidden layers may be scaled by PEPNet tower gates.


class Tower(nn.Module):
    def __init__(self, in_dim: int, widths: list[int], slope: float) -> None:
        super().__init__()
        dims = [in_dim, *widths]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = nn.LeakyReLU(slope)
        self.head = nn.Linear(dims[-1], 1)

    @property
    def widths(self) -> list[int]:
        return [layer.out_features for layer in self.layers]

    def forward(self, x: torch.Tensor, gates: list[torch.Tensor] | None = None) -> torch.Tensor:
        """[B, in_dim] -> [B] (a logit, or a raw value for the imputation tower)."""
        for i, layer in enumerate(self.layers):
            x = self.act(layer(x))
            if gates is not None:
                x = x * gates[i]
        return self.head(x).squeeze(-1)


# --- Per-task LoRA on the shared embedding: E_t = E + (α/r) · B_t A_t E.


class EmbeddingLora(nn.Module):
    """A rank-``rank`` update of the flattened sample embedding [B, width] for one task.

    B_t starts at zero (the usual LoRA initialisation), so E_t = E until the task trains it; the
    shared embedding keeps receiving the task's gradient through the identity path."""

    def __init__(self, width: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.down = nn.Linear(width, rank, bias=False)  # A_t
        self.up = nn.Linear(rank, width, bias=False)  # B_t
        nn.init.zeros_(self.up.weight)
        self.scale = alpha / rank

    def forward(self, shared: torch.Tensor) -> torch.Tensor:
        return shared + self.scale * self.up(self.down(shared))


# --- PEPNet-style gates: an embedding gate per task and gates on the tower's hidden layers.
#
# Gate inputs are stop-gradient copies (the paper's stopgrad(E_t) and stopgrad(O_t)): a gate
# learns to scale what it sees, but its input embeddings are not trained through the gate.


class GateNet(nn.Module):
    """scale · sigmoid(MLP(x)): a per-element multiplier in (0, scale); 1 when scale = 2 and the
    last layer outputs 0, as it does at initialisation."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, scale: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.sigmoid(self.net(x))


class EmbeddingGate(nn.Module):
    """δ_t = gate(task ⊕ stopgrad(E_t)); returns O_t = δ_t ⊙ E_t (and δ_t, for inspection)."""

    def __init__(self, width: int, task_dim: int, hidden: int, scale: float) -> None:
        super().__init__()
        self.task = nn.Parameter(torch.randn(task_dim) * 0.1)
        self.gate = GateNet(task_dim + width, hidden, width, scale)

    def forward(self, personal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        task = self.task.expand(personal.shape[0], -1)
        delta = self.gate(torch.cat([task, personal.detach()], dim=1))
        return delta * personal, delta


class TowerGates(nn.Module):
    """One gate per tower hidden layer, each fed stopgrad(O_t)."""

    def __init__(self, in_dim: int, layer_widths: list[int], hidden: int, scale: float) -> None:
        super().__init__()
        self.gates = nn.ModuleList(GateNet(in_dim, hidden, w, scale) for w in layer_widths)

    def forward(self, gated_embedding: torch.Tensor) -> list[torch.Tensor]:
        source = gated_embedding.detach()
        return [gate(source) for gate in self.gates]


# --- The exposure-probability head on the shared embedding, and its negatives.
#
# Impressions are the exposed positives. Without the impressions' own non-exposed candidates in
# the data, negatives are in-batch shuffled rows (ours): fields of real rows are permuted across
# the batch, giving feature combinations that were not exposed together.


def shuffled_negatives(fields: torch.Tensor, real: torch.Tensor, groups: list[list[int]],
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Negatives for the real rows of ``fields`` [B, F, D]: each group of field indices is
    permuted (jointly) over the real rows; fields in no group keep their row. Returns [n_real, F, D]."""
    rows = torch.nonzero(real > 0).squeeze(1)
    n, num_fields = rows.numel(), fields.shape[1]
    index = rows[:, None].expand(n, num_fields).clone()
    for group in groups:
        perm = rows[torch.randperm(n, generator=generator, device=rows.device)]
        index[:, group] = perm[:, None]
    field_ids = torch.arange(num_fields, device=fields.device).expand(n, num_fields)
    return fields[index, field_ids]


class ExposureHead(nn.Module):
    def __init__(self, num_fields: int, dim: int, widths: list[int], slope: float,
                 shuffle_groups: list[list[int]]) -> None:
        super().__init__()
        self.tower = Tower(num_fields * dim, widths, slope)
        self.shuffle_groups = shuffle_groups

    def loss(self, fields: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """BCE: real impressions labelled 1, their shuffled negatives 0."""
        negatives = shuffled_negatives(fields, real, self.shuffle_groups)
        pos = self.tower(fields.flatten(1))
        neg = self.tower(negatives.flatten(1))
        logits = torch.cat([pos, neg])
        labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
        mask = torch.cat([real, torch.ones_like(neg)])
        return masked_bce(logits, labels, mask)
