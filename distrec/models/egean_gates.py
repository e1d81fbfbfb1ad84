"""PEPNet-style gates: an embedding gate per task and gates on the tower's hidden layers.

Gate inputs are stop-gradient copies (the paper's stopgrad(E_t) and stopgrad(O_t)): a gate
learns to scale what it sees, but its input embeddings are not trained through the gate.
"""

from __future__ import annotations

import torch
from torch import nn


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
