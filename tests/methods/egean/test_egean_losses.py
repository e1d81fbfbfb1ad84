"""EGEAN / ESCM² losses against direct formulas, with clipping and stop-gradient checks."""

import math

import pytest
import torch
from torch.nn import functional as F

from distrec.methods.egean import losses as L

FLOOR, MAX_INV = 1e-6, 15.0


def random_rows(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    click = (torch.rand(n, generator=g) < 0.4).float()
    conversion = click * (torch.rand(n, generator=g) < 0.5).float()
    real = torch.ones(n)
    real[-5:] = 0  # padding rows
    ctr_logit = torch.randn(n, generator=g) * 3  # some propensities well below 1/15
    cvr_logit = torch.randn(n, generator=g)
    imputed = torch.rand(n, generator=g)
    return click, conversion, real, ctr_logit, cvr_logit, imputed


def direct_terms(click, conversion, real, ctr_logit, cvr_logit, imputed):
    """Row by row in float64, the way the formulas read."""
    rows = []
    for i in range(len(click)):
        if real[i] == 0:
            continue
        p = max(1 / (1 + math.exp(-float(ctr_logit[i]))), FLOOR)
        inv = min(1 / p, MAX_INV)
        r_hat = 1 / (1 + math.exp(-float(cvr_logit[i])))
        r = float(conversion[i])
        e = -(r * math.log(r_hat) + (1 - r) * math.log(1 - r_hat))
        rows.append((float(click[i]), inv, e, float(imputed[i])))
    return rows


def test_pvdr_is_dr_at_lambda_1_and_self_normalised_dr_at_lambda_0():
    click, conversion, real, ctr_logit, cvr_logit, imputed = random_rows()
    p = L.clipped_propensity(torch.sigmoid(ctr_logit), FLOOR, MAX_INV)
    e = L.cvr_error(cvr_logit, conversion)
    rows = direct_terms(click, conversion, real, ctr_logit, cvr_logit, imputed)
    assert any(o and inv == MAX_INV for o, inv, _, _ in rows)  # clipping is exercised

    numerator = sum(e_hat + o * (err - e_hat) * inv for o, inv, err, e_hat in rows)
    dr = numerator / len(rows)
    sndr = numerator / sum(o * inv for o, inv, _, _ in rows)
    torch.testing.assert_close(L.pvdr_loss(e, imputed, click, p, real, lam=1.0).double(),
                               torch.tensor(dr, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(L.pvdr_loss(e, imputed, click, p, real, lam=0.0).double(),
                               torch.tensor(sndr, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    lam = 0.3
    mixed = numerator / (lam * len(rows) + (1 - lam) * sum(o * inv for o, inv, _, _ in rows))
    torch.testing.assert_close(L.pvdr_loss(e, imputed, click, p, real, lam=lam).double(),
                               torch.tensor(mixed, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_ips_and_imputation_losses_match_direct_formulas():
    click, conversion, real, ctr_logit, cvr_logit, imputed = random_rows(seed=1)
    p = L.clipped_propensity(torch.sigmoid(ctr_logit), FLOOR, MAX_INV)
    e = L.cvr_error(cvr_logit, conversion)
    rows = direct_terms(click, conversion, real, ctr_logit, cvr_logit, imputed)
    ips = sum(o * err * inv for o, inv, err, _ in rows) / len(rows)
    imp = sum(o * (err - e_hat) ** 2 * inv for o, inv, err, e_hat in rows) / len(rows)
    torch.testing.assert_close(L.ips_loss(e, click, p, real).double(), torch.tensor(ips, dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(L.imputation_loss(e, imputed, click, p, real).double(),
                               torch.tensor(imp, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_ctcvr_loss_is_bce_of_the_product():
    click, conversion, real, ctr_logit, cvr_logit, _ = random_rows(seed=2)
    product = torch.sigmoid(ctr_logit) * torch.sigmoid(cvr_logit)
    keep = real > 0
    expected = F.binary_cross_entropy(product[keep].double(), conversion[keep].double())
    torch.testing.assert_close(L.ctcvr_loss(ctr_logit, cvr_logit, conversion, real).double(), expected,
                               rtol=1e-4, atol=1e-6)


def test_propensity_weight_is_clipped_and_carries_no_gradient():
    ctr_logit = torch.tensor([-20.0, -4.0, 0.0, 3.0], requires_grad=True)
    p = L.clipped_propensity(torch.sigmoid(ctr_logit), FLOOR, MAX_INV)
    torch.testing.assert_close(1 / p[:2], torch.tensor([MAX_INV, MAX_INV]))  # 1/p̂ = 2e8 and 55 -> 15
    torch.testing.assert_close(p[2:], torch.sigmoid(ctr_logit[2:]).detach())
    assert not p.requires_grad
    # floor alone (no inverse clip): the ESCM² floor 1e-6 holds
    assert float(L.clipped_propensity(torch.sigmoid(ctr_logit), FLOOR, 1e9)[0]) == pytest.approx(FLOOR)


def test_gradients_of_pvdr_and_imputation_losses():
    click, conversion, real, ctr_logit, cvr_logit, _ = random_rows(seed=3)
    ctr_logit = ctr_logit.clone().requires_grad_()
    cvr_logit = cvr_logit.clone().requires_grad_()
    imputed = torch.rand(len(click)).requires_grad_()
    p = L.clipped_propensity(torch.sigmoid(ctr_logit), FLOOR, MAX_INV)
    e = L.cvr_error(cvr_logit, conversion)

    loss = L.pvdr_loss(e, imputed.detach(), click, p, real, lam=0.5)
    g_ctr, g_cvr = torch.autograd.grad(loss, [ctr_logit, cvr_logit], allow_unused=True)
    assert g_ctr is None  # stop-gradient on the propensity: the CTR tower is not trained by PVDR
    # d/dr̂_i = o_i (σ(r̂_i) − r_i) / p̃_i / denominator: clipped rows get weight MAX_INV exactly
    denominator = 0.5 * real.sum() + 0.5 * (real * click / p).sum()
    expected = real * click * (torch.sigmoid(cvr_logit) - conversion) / p / denominator
    torch.testing.assert_close(g_cvr, expected.detach(), rtol=1e-5, atol=1e-7)
    clipped = (real * click > 0) & (torch.sigmoid(ctr_logit) < 1 / MAX_INV)
    assert clipped.any()

    imp = L.imputation_loss(e, imputed, click, p, real)
    g_cvr, g_imp = torch.autograd.grad(imp, [cvr_logit, imputed], allow_unused=True)
    assert g_cvr is None  # e is detached in the imputation loss: only the imputation tower learns
    expected = -2 * real * click * (e.detach() - imputed.detach()) / p / real.sum()
    torch.testing.assert_close(g_imp, expected, rtol=1e-5, atol=1e-7)


def test_padding_rows_change_nothing():
    click, conversion, real, ctr_logit, cvr_logit, imputed = random_rows(seed=4)
    p = L.clipped_propensity(torch.sigmoid(ctr_logit), FLOOR, MAX_INV)
    e = L.cvr_error(cvr_logit, conversion)
    keep = real > 0
    full = L.pvdr_loss(e, imputed, click, p, real, 0.5)
    trimmed = L.pvdr_loss(e[keep], imputed[keep], click[keep], p[keep], real[keep], 0.5)
    torch.testing.assert_close(full, trimmed)


def test_lambda_schedule_moves_from_start_to_steady_state():
    assert L.pvdr_lambda(0, 1.0, 0.4, 100.0) == pytest.approx(1.0)
    assert L.pvdr_lambda(100, 1.0, 0.4, 100.0) == pytest.approx(0.4 + 0.6 * math.exp(-1))
    assert L.pvdr_lambda(10_000, 1.0, 0.4, 100.0) == pytest.approx(0.4, abs=1e-12)
    assert L.pvdr_lambda(5, 1.0, 0.4, 0.0) == 0.4


def objective_gradients(dr_target: str, variant: str = "escm2_dr", pvdr_floor=None):
    """d(CVR term + imputation term)/d(CVR logit) and /d(imputation output) per row, from the
    variant's objective on random rows."""
    from distrec.methods.egean.config import MethodConfig
    from distrec.methods.egean.objective import EntireSpaceObjective, LabelColumns

    click, conversion, real, ctr_logit, cvr_logit, _ = random_rows(seed=5)
    method = MethodConfig(dr_target=dr_target, pvdr_propensity_floor=pvdr_floor, pvdr_lambda_tau=0.0)
    method.weights.mmd = method.weights.exposure = method.weights.ctr = method.weights.ctcvr = 0.0
    objective = EntireSpaceObjective(variant, LabelColumns(0, 1), method).train()
    out = {"ctr_out": ctr_logit, "cvr_out": cvr_logit.clone().requires_grad_(),
           "imputation_out": torch.randn(len(click)).requires_grad_()}
    loss, _ = objective(out, torch.stack([click, conversion], 1), real, torch.zeros(len(click)))
    g_cvr, g_imp = torch.autograd.grad(loss, [out["cvr_out"], out["imputation_out"]])
    return g_cvr, g_imp, click, conversion, real, ctr_logit, out


@pytest.mark.parametrize("variant", ["escm2_dr", "egean"])
def test_only_the_imputed_label_variant_trains_the_cvr_tower_on_unclicked_rows(variant):
    g_cvr, g_imp, click, *_ = objective_gradients("imputed_error", variant)
    unclicked = click == 0
    assert torch.all(g_cvr[unclicked] == 0) and g_cvr[~unclicked].abs().sum() > 0
    assert torch.all(g_imp[unclicked] == 0)  # the error imputation learns from clicked rows

    g_cvr, g_imp, click, conversion, real, ctr_logit, out = objective_gradients("imputed_label", variant)
    assert g_cvr[unclicked & (real > 0)].abs().min() > 0  # every real unclicked row trains it
    # on an unclicked row only ê = BCE(r̃, r̂) acts: d/dr̂ = (σ(r̂) − r̃) / denominator (λ = 1 at DR)
    if variant == "escm2_dr":
        pseudo = torch.sigmoid(out["imputation_out"]).detach()
        expected = real * (torch.sigmoid(out["cvr_out"]).detach() - pseudo) / real.sum()
        torch.testing.assert_close(g_cvr[unclicked], expected[unclicked], rtol=1e-5, atol=1e-7)
        # the label imputation: d/dx = o (σ(x) − r) / p̃ / |D|
        p = L.clipped_propensity(torch.sigmoid(ctr_logit), 1e-6, 15.0)
        expected = real * click * (pseudo - conversion) / p / real.sum()
        torch.testing.assert_close(g_imp, expected, rtol=1e-5, atol=1e-7)


def test_pvdr_propensity_floor_replaces_the_escm2_clip_for_egean_only():
    from distrec.methods.egean.config import MethodConfig
    from distrec.methods.egean.objective import EntireSpaceObjective, LabelColumns

    ctr = torch.tensor([0.001, 0.03, 0.5])
    method = MethodConfig(pvdr_propensity_floor=0.01)
    egean = EntireSpaceObjective("egean", LabelColumns(0, 1), method)
    dr = EntireSpaceObjective("escm2_dr", LabelColumns(0, 1), method)
    torch.testing.assert_close(egean.propensity(ctr, "pvdr"), torch.tensor([0.01, 0.03, 0.5]))
    torch.testing.assert_close(dr.propensity(ctr, "dr"), torch.tensor([1 / 15, 1 / 15, 0.5]))
    default = EntireSpaceObjective("egean", LabelColumns(0, 1), MethodConfig())
    torch.testing.assert_close(default.propensity(ctr, "pvdr"), torch.tensor([1 / 15, 1 / 15, 0.5]))
