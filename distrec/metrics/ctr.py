"""CTR metrics (AUC, GAUC, LogLoss) computed exactly over the rows of all ranks.

Per-rank AUCs cannot be averaged into the global AUC, so exact mode gathers every prediction onto
every rank at `compute()`. AUCs use the Mann-Whitney rank statistic with average ranks for ties,
in float64, which equals sklearn's `roc_auc_score`. (torchmetrics' exact `binary_auroc` returns
float32 and 0.0 for one-class input; torchrec's AUC depends on the sort order of tied predictions.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from distrec.metrics.gather import all_reduce_sum, gather_tensors

CTR_METRIC_NAMES = ("auc", "gauc", "logloss")
_EPS = 1e-7


def _per_group_auc(
    preds: torch.Tensor, labels: torch.Tensor, group_idx: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """AUC of each group (nan where a group lacks a class) and each group's row count.

    group_idx holds contiguous ids in [0, num_groups).
    """
    # Sort by (group, pred): stable sort by pred, then stable sort by group.
    order = torch.argsort(preds, stable=True)
    order = order[torch.argsort(group_idx[order], stable=True)]
    p, g, y = preds[order], group_idx[order], labels[order].to(torch.float64)

    n = p.numel()
    new_run = torch.ones(n, dtype=torch.bool)
    new_run[1:] = (g[1:] != g[:-1]) | (p[1:] != p[:-1])
    run_id = torch.cumsum(new_run, 0) - 1
    run_len = torch.bincount(run_id).to(torch.float64)
    run_start = torch.cumsum(run_len, 0) - run_len
    avg_pos = (run_start + (run_len - 1) / 2)[run_id]  # tied rows share their average position

    group_len = torch.bincount(g, minlength=num_groups).to(torch.float64)
    group_start = torch.cumsum(group_len, 0) - group_len
    rank = avg_pos - group_start[g] + 1  # 1-based rank inside the row's group

    n_pos = torch.bincount(g, weights=y, minlength=num_groups)
    n_neg = group_len - n_pos
    pos_rank_sum = torch.bincount(g, weights=rank * y, minlength=num_groups)
    auc = (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc = torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, math.nan))
    return auc, group_len


def binary_auc(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Exact ROC AUC (ties get average ranks); nan when labels hold only one class."""
    if preds.numel() == 0:
        return math.nan
    idx = torch.zeros(preds.numel(), dtype=torch.int64)
    auc, _ = _per_group_auc(preds.double().cpu(), labels.cpu(), idx, 1)
    return float(auc[0])


def group_auc(preds: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> float:
    """GAUC: mean of per-group AUCs weighted by group row count, over groups with both classes."""
    if preds.numel() == 0:
        return math.nan
    _, group_idx = torch.unique(groups.cpu(), return_inverse=True)
    num_groups = int(group_idx.max()) + 1
    auc, size = _per_group_auc(preds.double().cpu(), labels.cpu(), group_idx, num_groups)
    valid = ~torch.isnan(auc)
    if not bool(valid.any()):
        return math.nan
    return float((auc[valid] * size[valid]).sum() / size[valid].sum())


def _binned_auc(neg_counts: torch.Tensor, pos_counts: torch.Tensor) -> float:
    """AUC from per-bin class counts: the trapezoidal ROC over the bin edges."""
    n_pos, n_neg = pos_counts.sum().double(), neg_counts.sum().double()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    neg_below = torch.cumsum(neg_counts, 0).double() - neg_counts.double()
    wins = (pos_counts.double() * (neg_below + 0.5 * neg_counts.double())).sum()
    return float(wins / (n_pos * n_neg))


class CtrMetricAccumulator:
    """Accumulates binary predictions per batch; `compute()` gives metrics over all ranks' rows.

    Exact mode (default) keeps every real row on CPU and gathers all of them onto every rank at
    `compute()`, so memory is O(total rows) per rank. `max_rows` turns an oversized gather into a
    ValueError. For very large eval sets use `binned=True`: predictions are bucketed on the
    thresholds torchmetrics' `BinaryAUROC(thresholds=num_thresholds)` uses (linspace(0, 1)), which
    gives that metric's AUC with O(num_thresholds) memory; GAUC is not available in binned mode.
    LogLoss is always exact (sums are all-reduced).

    `compute()` is collective: every rank must call it with the same `names`, and every rank's
    accumulator must be built with the same arguments.
    """

    def __init__(
        self, binned: bool = False, num_thresholds: int = 10_000, max_rows: int | None = None
    ) -> None:
        self.binned = binned
        self.num_thresholds = num_thresholds
        self.max_rows = max_rows
        self.reset()

    def reset(self) -> None:
        self._preds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._groups: list[torch.Tensor] = []
        self._has_groups: bool | None = None
        self._logloss_sum = 0.0
        self._num_rows = 0
        self._bin_counts = torch.zeros(2, self.num_thresholds, dtype=torch.int64)  # [neg, pos]

    def update(
        self,
        preds: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> None:
        """preds: [B] probabilities; labels: [B] 0/1; groups: [B] int64 group ids;
        weights: [B], 0 marks a padding row to skip (other weights keep rows, never scale them).
        """
        preds = preds.detach().reshape(-1).cpu()
        labels = labels.detach().reshape(-1).cpu()
        if labels.numel() != preds.numel():
            raise ValueError(f"preds has {preds.numel()} rows but labels has {labels.numel()}")
        if has_groups := groups is not None:
            if self.binned:
                raise ValueError("groups are not used in binned mode (GAUC needs exact mode)")
            groups = groups.detach().reshape(-1).cpu().to(torch.int64)
            if groups.numel() != preds.numel():
                raise ValueError(f"preds has {preds.numel()} rows but groups has {groups.numel()}")
        if self._has_groups is not None and self._has_groups != has_groups:
            raise ValueError("pass groups on every update() call or on none")
        self._has_groups = has_groups

        if weights is not None:
            keep = weights.detach().reshape(-1).cpu() != 0
            preds, labels = preds[keep], labels[keep]
            groups = groups[keep] if groups is not None else None
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError("labels must be 0 or 1")
        labels = labels.to(torch.bool)

        p = preds.double().clamp(_EPS, 1 - _EPS)
        self._logloss_sum += float(-torch.where(labels, p.log(), (1 - p).log()).sum())
        self._num_rows += preds.numel()
        if self.binned:
            thresholds = torch.linspace(0, 1, self.num_thresholds)
            # bin i holds preds in [t_i, t_{i+1}): counted positive at t_i but not at t_{i+1}.
            bins = (torch.bucketize(preds.float(), thresholds, right=True) - 1).clamp(min=0)
            self._bin_counts += torch.bincount(
                labels.long() * self.num_thresholds + bins, minlength=2 * self.num_thresholds
            ).view(2, -1)
        else:
            self._preds.append(preds)
            self._labels.append(labels)
            if groups is not None:
                self._groups.append(groups)

    def compute(self, names: Sequence[str] = CTR_METRIC_NAMES) -> dict[str, float]:
        """Metrics over all ranks' rows plus `num_rows`; nan where undefined (e.g. one class)."""
        unknown = [n for n in names if n not in CTR_METRIC_NAMES]
        if unknown:
            raise ValueError(f"unknown CTR metric(s) {unknown}; known: {list(CTR_METRIC_NAMES)}")
        if self.binned and "gauc" in names:
            raise ValueError("gauc needs exact mode (binned=False)")
        if "gauc" in names and self._has_groups is False:
            raise ValueError("gauc needs groups passed to update()")

        local = torch.tensor([self._logloss_sum, self._num_rows], dtype=torch.float64)
        sums = all_reduce_sum(local)
        num_rows = int(sums[1])
        out: dict[str, float] = {"num_rows": num_rows}
        if "logloss" in names:
            out["logloss"] = float(sums[0] / num_rows) if num_rows else math.nan
        needs_rows = "gauc" in names or ("auc" in names and not self.binned)
        if needs_rows and self.max_rows is not None and num_rows > self.max_rows:
            raise ValueError(
                f"exact AUC/GAUC would gather {num_rows} rows onto every rank (max_rows="
                f"{self.max_rows}); use binned=True for AUC"
            )

        if "auc" in names and self.binned:
            counts = all_reduce_sum(self._bin_counts)
            out["auc"] = _binned_auc(counts[0], counts[1])
        elif needs_rows:
            preds = gather_tensors(_cat(self._preds, torch.float64))
            labels = gather_tensors(_cat(self._labels, torch.bool))
            if "auc" in names:
                out["auc"] = binary_auc(preds, labels)
            if "gauc" in names:
                groups = gather_tensors(_cat(self._groups, torch.int64))
                out["gauc"] = group_auc(preds, labels, groups)
        return out


def _cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    if not parts:
        return torch.empty(0, dtype=dtype)
    return torch.cat([p.to(dtype) for p in parts])
