"""Top-k ranking metrics (HR@k, MRR@k, NDCG@k) for one target item per row, exact over ranks.

Each metric is a mean over rows, so summing per-rank sums and counts and dividing is exact.

Rank of the target (0 = best) is PESSIMISTIC about ties: every other non-excluded item whose score
is >= the target's score ranks ahead of it. So a model that scores all items equally gets no credit
(optimistic tie-breaking would give it HR@k = 1), and the result never depends on item ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from distrec.metrics.gather import all_reduce_sum


def _metric_names(ks: Sequence[int]) -> list[str]:
    return [name for k in ks for name in (f"hr@{k}", f"mrr@{k}", f"ndcg@{k}", f"mrr@{k}_sq")]


def target_ranks(
    scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """[B] 0-based pessimistic rank of each row's target among its non-excluded items.

    exclude: [B, n_items] bool, True for items to leave out (e.g. already seen); the target itself
    is always ranked, even if marked.
    """
    targets = targets.reshape(-1).to(torch.int64)
    target_score = scores.gather(1, targets[:, None])
    ahead = scores >= target_score
    if exclude is not None:
        ahead &= ~exclude
    ahead.scatter_(1, targets[:, None], False)  # the target does not rank ahead of itself
    return ahead.sum(1)


def ranking_metrics_sums(
    scores: torch.Tensor,
    targets: torch.Tensor,
    ks: Sequence[int] = (5, 10),
    exclude: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Sums over the batch of hr@k, mrr@k, ndcg@k for each k, plus `mrr@k_sq` (sum of squared
    reciprocal ranks) and `count` (rows summed).

    scores: [B, n_items]; targets: [B] item index; weights: [B], 0 marks padding rows to skip.
    HR@k = 1[rank<k]; MRR@k = 1/(rank+1) if rank<k; NDCG@k = 1/log2(rank+2) if rank<k (else 0).
    """
    rank = target_ranks(scores, targets, exclude).to(torch.float64)
    keep = (
        torch.ones_like(rank, dtype=torch.bool)
        if weights is None
        else weights.reshape(-1).to(rank.device) != 0
    )
    rank = rank[keep]
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        hit = (rank < k).to(torch.float64)
        out[f"hr@{k}"] = hit.sum()
        reciprocal = hit / (rank + 1)
        out[f"mrr@{k}"] = reciprocal.sum()
        out[f"mrr@{k}_sq"] = (reciprocal * reciprocal).sum()  # for MRR's standard error
        out[f"ndcg@{k}"] = (hit / torch.log2(rank + 2)).sum()
    out["count"] = torch.tensor(float(rank.numel()), dtype=torch.float64, device=rank.device)
    return out


class RankingMetricAccumulator:
    """Accumulates ranking-metric sums; `compute()` all-reduces them (collective: every rank must
    call it, with accumulators built with the same `ks`) and returns means, `num_rows` and
    `mrr@k_se`, the standard error of MRR@k over rows (sqrt((E[rr²] - MRR²) / n)): with a few
    hundred test rows two models' MRRs often differ by less than that."""

    def __init__(self, ks: Sequence[int] = (5, 10)) -> None:
        self.ks = tuple(ks)
        self._names = _metric_names(self.ks) + ["count"]
        self.reset()

    def reset(self) -> None:
        self._sums = torch.zeros(len(self._names), dtype=torch.float64)

    def update(
        self,
        scores: torch.Tensor,
        targets: torch.Tensor,
        exclude: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> None:
        sums = ranking_metrics_sums(scores.detach(), targets, self.ks, exclude, weights)
        self._sums += torch.stack([sums[n] for n in self._names]).cpu()

    def compute(self) -> dict[str, float]:
        totals = all_reduce_sum(self._sums)
        count = float(totals[-1])
        means = {name: float(total / count) if count else math.nan
                 for name, total in zip(self._names[:-1], totals[:-1])}
        out = {name: value for name, value in means.items() if not name.endswith("_sq")}
        for k in self.ks:
            variance = max(means[f"mrr@{k}_sq"] - means[f"mrr@{k}"] ** 2, 0.0)
            out[f"mrr@{k}_se"] = math.sqrt(variance / count) if count else math.nan
        out["num_rows"] = int(count)
        return out
