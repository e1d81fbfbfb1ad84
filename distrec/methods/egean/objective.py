"""The training objective of each variant, from the towers' outputs and the batch's labels.

    egean      CTR + PVDR (λ_t: steady-state control) + imputation + MMD + exposure + CTCVR
    esmm       CTR + CTCVR
    escm2_ipw  CTR + IPS + CTCVR
    escm2_dr   CTR + DR (PVDR at λ = 1) + imputation + CTCVR
    naive_cvr  CTR + BCE of CVR on clicked rows only

Each term is weighted by ``method.weights.<name>``; ``cvr`` weighs the variant's CVR term.
DR and PVDR impute either the CVR error (``method.dr_target: imputed_error``: ê from the
imputation tower, the CVR tower learns from clicked rows only) or the label (``imputed_label``:
ê = BCE(r̃, r̂) with r̃ the imputation tower's label, so unclicked rows train the CVR tower).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from distrec.methods.egean import losses as L
from distrec.methods.egean.losses import mmd2_rbf

CVR_LOSS = {"egean": "pvdr", "esmm": None, "escm2_ipw": "ips", "escm2_dr": "dr", "naive_cvr": "clicked_bce"}


@dataclass(frozen=True)
class LabelColumns:
    click: int
    conversion: int


class EntireSpaceObjective(nn.Module):
    """``forward(out, labels, weights, groups) -> (loss, outputs)``; counts training steps (a
    checkpointed buffer) for the λ schedule."""

    def __init__(self, variant: str, labels: LabelColumns, method_cfg) -> None:
        super().__init__()
        self.variant = variant
        self.labels = labels
        self.method = method_cfg
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.int64))

    def forward(self, out: dict, labels: torch.Tensor, weights: torch.Tensor, groups: torch.Tensor):
        real = (weights > 0).to(labels.dtype)
        click = labels[:, self.labels.click]
        conversion = labels[:, self.labels.conversion]
        if self.training:
            self.train_steps += 1
        losses = self.losses(out, click, conversion, real)
        w = self.method.weights
        loss = sum(getattr(w, name) * value for name, value in losses.items())
        ctr, cvr = torch.sigmoid(out["ctr_out"].detach()), torch.sigmoid(out["cvr_out"].detach())
        outputs = {
            "loss": loss.detach(),
            "ctr": ctr,
            "cvr": cvr,
            "ctcvr": ctr * cvr,
            "labels": labels,
            "weights": weights,
            "groups": groups,
            **{f"loss_{name}": value.detach() for name, value in losses.items()},
        }
        return loss, outputs

    def losses(self, out: dict, click: torch.Tensor, conversion: torch.Tensor, real: torch.Tensor) -> dict:
        """The variant's unweighted losses, keyed by their ``method.weights`` names."""
        m, w = self.method, self.method.weights
        losses = {}
        if w.ctr > 0:
            losses["ctr"] = L.masked_bce(out["ctr_out"], click, real)
        if w.ctcvr > 0 and self.variant != "naive_cvr":
            losses["ctcvr"] = L.ctcvr_loss(out["ctr_out"], out["cvr_out"], conversion, real)
        kind = CVR_LOSS[self.variant]
        if kind is None or w.cvr <= 0:
            return losses
        if kind == "clicked_bce":
            losses["cvr"] = L.masked_bce(out["cvr_out"], conversion, real * click)
            return losses

        propensity = self.propensity(torch.sigmoid(out["ctr_out"]), kind)
        error = L.cvr_error(out["cvr_out"], conversion)
        if kind == "ips":
            losses["cvr"] = L.ips_loss(error, click, propensity, real)
            return losses

        lam = 1.0 if kind == "dr" else self.pvdr_lambda()
        if str(m.dr_target) == "imputed_label":
            imputed = L.imputed_label_error(out["cvr_out"], torch.sigmoid(out["imputation_out"]))
            losses["cvr"] = L.pvdr_loss(error, imputed, click, propensity, real, lam)
            if w.imputation > 0:
                losses["imputation"] = L.imputed_label_loss(out["imputation_out"], conversion, click, propensity, real)
        else:
            imputed = nn.functional.softplus(out["imputation_out"])  # a predicted error: BCE is >= 0
            imputed_in_dr = imputed.detach() if m.detach_imputation_in_dr else imputed
            losses["cvr"] = L.pvdr_loss(error, imputed_in_dr, click, propensity, real, lam)
            if w.imputation > 0:
                losses["imputation"] = L.imputation_loss(error, imputed, click, propensity, real)
        if kind == "pvdr":
            if w.mmd > 0:
                losses["mmd"] = self.alignment(out, click * real)
            if "exposure_loss" in out:
                losses["exposure"] = out["exposure_loss"]
        return losses

    def propensity(self, ctr_prob: torch.Tensor, kind: str) -> torch.Tensor:
        """ESCM²'s clipped p̃ for every variant; PVDR with ``method.pvdr_propensity_floor`` set
        uses that floor alone (no 1/p̃ cap), keeping the small-propensity rows PVDR is for."""
        m = self.method
        if kind == "pvdr" and m.pvdr_propensity_floor is not None:
            return L.clipped_propensity(ctr_prob, m.pvdr_propensity_floor, math.inf)
        return L.clipped_propensity(ctr_prob, m.propensity_floor, m.max_inverse_propensity)

    def pvdr_lambda(self) -> float:
        m = self.method
        return L.pvdr_lambda(int(self.train_steps), m.pvdr_lambda_start, m.pvdr_lambda_steady, m.pvdr_lambda_tau)

    def alignment(self, out: dict, clicked: torch.Tensor) -> torch.Tensor:
        """MMD² between the CVR-personalised and the shared embeddings of the clicked rows."""
        rows = torch.nonzero(clicked > 0).squeeze(1)[: self.method.mmd_max_rows]
        personal = out[f"cvr_{self.method.mmd_embedding}"]
        return mmd2_rbf(personal[rows], out["shared"][rows])
