"""Entire-space evaluation of a CTR/CVR model, exact over every rank's rows.

Always: CTR metrics on impressions, CVR metrics on clicked impressions, CTCVR metrics
(p̂CTR · p̂CVR against click-and-convert) on impressions. With ground-truth columns (generated
data, where every impression has a known conversion probability and a draw from it): CVR
metrics against the draws over the whole exposure space, and the calibration bias
mean(p̂CVR) − mean(true CVR) over the exposure space and over the clicked space.
"""

from __future__ import annotations

import math

import torch

from distrec.metrics import CtrMetricAccumulator, all_reduce_sum


class EntireSpaceMetrics:
    def __init__(self, click: int, conversion: int, true_cvr: int | None = None,
                 cvr_draw: int | None = None) -> None:
        self.click, self.conversion = click, conversion
        self.true_cvr, self.cvr_draw = true_cvr, cvr_draw
        self.ctr = CtrMetricAccumulator()
        self.cvr = CtrMetricAccumulator()
        self.ctcvr = CtrMetricAccumulator()
        self.cvr_exposure = CtrMetricAccumulator() if cvr_draw is not None else None
        # [Σ p̂CVR, Σ true CVR, rows] over impressions, then over clicked impressions
        self.sums = torch.zeros(6, dtype=torch.float64)

    def update(self, out: dict) -> None:
        labels, real = out["labels"], out["weights"] > 0
        click = labels[:, self.click]
        clicked = real & (click > 0)
        groups = out["groups"]
        self.ctr.update(out["ctr"], click, real, groups)
        self.cvr.update(out["cvr"], labels[:, self.conversion], clicked, groups)
        self.ctcvr.update(out["ctcvr"], labels[:, self.conversion], real, groups)
        if self.cvr_exposure is not None:
            self.cvr_exposure.update(out["cvr"], labels[:, self.cvr_draw], real, groups)
        if self.true_cvr is not None:
            pred, truth = out["cvr"].double(), labels[:, self.true_cvr].double()
            for offset, mask in ((0, real), (3, clicked)):
                m = mask.double()
                self.sums[offset:offset + 3] += torch.stack([(pred * m).sum(), (truth * m).sum(), m.sum()]).cpu()

    def compute(self, names) -> dict[str, float]:
        """``<space>_<name>`` for every CTR metric name (auc, gauc, logloss), plus the bias terms.
        Collective: every rank must call it."""
        names = tuple(names)
        out: dict[str, float] = {}
        parts = [("ctr", self.ctr), ("cvr", self.cvr), ("ctcvr", self.ctcvr)]
        if self.cvr_exposure is not None:
            parts.append(("cvr_exposure", self.cvr_exposure))
        for prefix, accumulator in parts:
            for key, value in accumulator.compute(names).items():
                out[f"{prefix}_{key}"] = value
        if self.true_cvr is not None:
            s = all_reduce_sum(self.sums.clone())
            for space, o in (("exposure", 0), ("click", 3)):
                n = float(s[o + 2])
                out[f"cvr_mean_pred_{space}"] = float(s[o] / n) if n else math.nan
                out[f"cvr_mean_true_{space}"] = float(s[o + 1] / n) if n else math.nan
                out[f"cvr_bias_{space}"] = float((s[o] - s[o + 1]) / n) if n else math.nan
        return out
