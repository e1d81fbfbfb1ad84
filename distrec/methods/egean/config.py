"""Typed ``model`` and ``method`` sections of the EGEAN recipe (``run.recipe: egean``).

EGEAN (arXiv 2412.06852) learns CVR over the whole exposure space under covariate shift; the
same recipe trains the baselines ESMM, ESCM²-IPS, ESCM²-DR and a naive clicks-only CVR model,
picked by ``model.variant``. Choices neither the paper's text nor code settles for us are marked
**(ours)**; each is a named option here with the default ../shared/docs/methods.md gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from distrec.config.schema import Choice, ranged


class Variant(Choice):
    egean = "egean"
    esmm = "esmm"
    escm2_ipw = "escm2_ipw"
    escm2_dr = "escm2_dr"
    naive_cvr = "naive_cvr"


class DrTarget(Choice):
    """What the DR / PVDR term imputes (ours: the paper does not say)."""

    imputed_error = "imputed_error"  # ê: the imputation tower predicts the CVR error (DR-JL, ESCM²)
    imputed_label = "imputed_label"  # ê = BCE(r̃, r̂): it predicts the label; unclicked rows train the CVR tower


class MmdEmbedding(Choice):
    """(ours) The CVR-personalised side of the MMD."""

    gated = "gated"  # O_t
    lora = "lora"  # E_t


@dataclass
class ModelConfig:
    variant: Variant = Variant.egean
    embedding_dim: int = ranged(16, min=1)  # width of every shared table (and of the dense-feature field)
    tower_arch: List[int] = ranged([64, 32], min=1)  # CTR, CVR, imputation towers
    leaky_relu_slope: float = 0.01  # towers and heads use LeakyReLU (paper)
    # EGEAN only ------------------------------------------------------------------------------
    lora_rank: int = ranged(8, min=0)  # (ours) per-task LoRA E_t = E + B_t A_t E on the whole sample embedding; 0: off
    lora_alpha: float = 8.0  # LoRA scale alpha / rank (the usual LoRA convention)
    gates: bool = True  # PEPNet-style embedding gate and gated tower layers
    gate_hidden: int = ranged(64, min=1)  # hidden width of each gate network
    gate_scale: float = 2.0  # gate = scale * sigmoid(.), PEPNet's gamma: 1.0 at initialisation
    task_embedding_dim: int = ranged(8, min=1)  # the learned task vector in gate(task ⊕ stopgrad(E_t))
    exposure_arch: List[int] = ranged([64], min=1)  # exposure-probability head


@dataclass
class LossWeights:
    """Total = Σ weight · loss. ``cvr`` weighs the variant's CVR loss: PVDR (egean), IPS
    (escm2_ipw), DR (escm2_dr) or clicked-rows BCE (naive_cvr); ESMM has none. A loss a variant
    lacks, or whose weight is 0, is not computed (and its head is not built)."""

    ctr: float = 1.0
    cvr: float = 1.0
    imputation: float = 1.0
    mmd: float = 0.1  # (ours)
    exposure: float = 0.1  # (ours)
    ctcvr: float = 1.0


@dataclass
class GroundTruthConfig:
    """Generated impressions with a known conversion probability (``distrec egean synth``).

    Conversion and click logits share the conversion drivers; ``shift`` scales how strongly clicks
    select impressions that convert well (0: the clicked space is a random sample of the exposure
    space; larger: stronger covariate shift)."""

    rows: int = 20000
    valid_rows: int = 5000
    shift: float = 2.0
    rows_per_file: int = 50000
    rows_per_row_group: int = 5000
    num_users: int = 2000
    num_items: int = 5000
    num_categories: int = 50
    num_contexts: int = 16
    num_dense: int = 4
    zipf_a: float = 1.1
    driver_scale: float = 1.0  # spread of the conversion drivers v (the id effects are uniform in ±driver_scale)
    ctr_bias: float = -1.0  # click logit offset (mean CTR)
    cvr_bias: float = -1.5  # conversion logit offset (mean CVR)
    seed: int = 0  # sampling only; the hidden world is fixed, so train and valid share it


@dataclass
class MethodConfig:
    weights: LossWeights = field(default_factory=LossWeights)
    click_label: str = "click"
    conversion_label: str = "purchase"
    # ground-truth columns: when the schema lists them as labels, evaluation adds exposure-space
    # CVR AUC (against the draws) and calibration bias (against the probability)
    true_cvr_label: str = "true_cvr"
    cvr_draw_label: str = "cvr_draw"
    # propensity: p̃ = max(stopgrad(p̂), propensity_floor, 1 / max_inverse_propensity), the ESCM²
    # rule (floor 1e-6, inverse weight clipped at 15); PVDR's p_min uses the same two (ours)
    propensity_floor: float = 1e-6
    max_inverse_propensity: float = 15.0
    # PVDR steady-state control (ours): λ_t = λ_∞ + (λ_0 − λ_∞)·exp(−t / τ), t = training steps
    pvdr_lambda_start: float = 1.0  # λ_0: 1 is DR
    pvdr_lambda_steady: float = 0.5  # λ_∞ (ours)
    pvdr_lambda_tau: float = 1000.0  # τ in steps (ours); 0: λ = λ_∞ from the start
    # PVDR's own p_min (ours): null uses the ESCM² rule above; a number is the only floor (no 1/p̃ cap)
    pvdr_propensity_floor: Optional[float] = None
    dr_target: DrTarget = DrTarget.imputed_error
    # (imputed_error, ours) ê enters PVDR/DR as a constant: only the imputation loss trains the imputation tower
    detach_imputation_in_dr: bool = True
    # naive_cvr: does its CTR loss also train the shared embedding? false (ours): the CVR model
    # learns from clicked rows only, its CTR head (for CTR/CTCVR metrics) reads a stop-gradient copy
    naive_ctr_trains_embedding: bool = False
    mmd_embedding: MmdEmbedding = MmdEmbedding.gated
    mmd_max_rows: int = 1024  # clicked rows per batch entering the O(n²) MMD (the first ones)
    # exposure negatives without non-exposed candidates in the data: in-batch shuffled rows (ours).
    # Empty: every field is permuted independently; else these fields are permuted together
    # (e.g. the item-side fields, giving unexposed user-item pairs)
    exposure_shuffle_fields: List[str] = field(default_factory=list)
    ground_truth: Optional[GroundTruthConfig] = None  # generate data.train/valid/schema if absent
