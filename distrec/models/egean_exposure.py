"""The exposure-probability head on the shared embedding, and its negatives.

Impressions are the exposed positives. Without the impressions' own non-exposed candidates in
the data, negatives are in-batch shuffled rows (ours): fields of real rows are permuted across
the batch, giving feature combinations that were not exposed together.
"""

from __future__ import annotations

import torch
from torch import nn

from distrec.models.egean_losses import masked_bce
from distrec.models.egean_towers import Tower


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
