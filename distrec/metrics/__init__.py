"""Evaluation metrics computed exactly over the rows of all ranks (never averaged per rank)."""

from distrec.metrics.ctr import (
    CTR_METRIC_NAMES,
    CtrMetricAccumulator,
    binary_auc,
    group_auc,
)
from distrec.metrics.gather import all_reduce_sum, gather_tensors
from distrec.metrics.ranking import (
    RankingMetricAccumulator,
    ranking_metrics_sums,
    target_ranks,
)

__all__ = [
    "CTR_METRIC_NAMES",
    "CtrMetricAccumulator",
    "RankingMetricAccumulator",
    "all_reduce_sum",
    "binary_auc",
    "gather_tensors",
    "group_auc",
    "ranking_metrics_sums",
    "target_ranks",
]
