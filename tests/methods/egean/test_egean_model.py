"""EGEAN configs, the variants' parts, and the objective's wiring (in one process, no sharding)."""

import glob

import pytest
import torch
from omegaconf import OmegaConf

from distrec.errors import ConfigError
from distrec.methods import load_config
from distrec.methods.egean.config import GroundTruthConfig
from distrec.methods.egean.ground_truth import feature_schema
from distrec.methods.egean.model import EgeanDenseNet
from distrec.methods.egean.objective import EntireSpaceObjective, LabelColumns
from distrec.methods.egean.recipe import build_model

SCHEMA = feature_schema(GroundTruthConfig())
NUM_FIELDS, DIM = len(SCHEMA.sparse_names), 8


@pytest.mark.parametrize("path", sorted(glob.glob("configs/egean/*.yaml")))
def test_every_config_loads(path):
    cfg = load_config(path, ["data.train=x", "data.valid=y", "data.schema=z"])
    assert cfg.run.recipe == "egean" and cfg.model.variant == "egean"


def test_config_typos_and_bad_choices_are_named():
    with pytest.raises(ConfigError, match="did you mean: pvdr_lambda_tau"):
        load_config("configs/egean/smoke.yaml", ["method.pvdr_lamda_tau=3"])
    with pytest.raises(ConfigError, match="config key 'model.variant' in command line .*'dr' is not one of egean, "):
        load_config("configs/egean/smoke.yaml", ["model.variant=dr"])
    cfg = load_config("configs/egean/smoke.yaml", ["method.conversion_label=buy"])
    with pytest.raises(ConfigError, match=r"method.conversion_label='buy' is not a label .*purchase"):
        build_model(cfg, SCHEMA)
    cfg = load_config("configs/egean/smoke.yaml", ["method.exposure_shuffle_fields=[shop]"])
    with pytest.raises(ConfigError, match="exposure_shuffle_fields"):
        build_model(cfg, SCHEMA)


def dense_parts(variant, *overrides):
    cfg = load_config("configs/egean/smoke.yaml", [f"model.variant={variant}", *overrides])
    model = build_model(cfg, SCHEMA)
    return {name.split(".")[0] + "." + name.split(".")[1] for name, _ in model.dense.named_modules()
            if name.count(".") >= 1}


def test_each_variant_builds_its_own_parts():
    egean = dense_parts("egean")
    assert {"branches.ctr", "branches.cvr", "branches.imputation", "exposure.tower"} <= egean
    names = {n for n, _ in build_model(load_config("configs/egean/smoke.yaml"), SCHEMA).dense.named_parameters()}
    assert any(".lora." in n for n in names) and any("embedding_gate" in n for n in names)
    assert any("tower_gates" in n for n in names)
    for variant in ("esmm", "escm2_ipw", "naive_cvr"):
        parts = dense_parts(variant)
        assert "branches.imputation" not in parts and "exposure.tower" not in parts
    assert "branches.imputation" in dense_parts("escm2_dr")
    assert "exposure.tower" not in dense_parts("egean", "method.weights.exposure=0")
    plain = {n for n, _ in build_model(load_config("configs/egean/smoke.yaml", ["model.variant=escm2_dr"]),
                                        SCHEMA).dense.named_parameters()}
    assert not any(".lora." in n or "gate" in n for n in plain)


def make(variant, **method_overrides):
    cfg = load_config("configs/egean/smoke.yaml", [f"model.variant={variant}", f"model.embedding_dim={DIM}"])
    method = OmegaConf.merge(cfg.method, method_overrides)
    torch.manual_seed(0)
    dense = EgeanDenseNet(NUM_FIELDS, 0, DIM, cfg.model, method, [[i] for i in range(NUM_FIELDS)])
    objective = EntireSpaceObjective(variant, LabelColumns(click=0, conversion=1), method)
    return dense, objective


def batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    embeddings = [torch.randn(n, DIM, generator=g).requires_grad_() for _ in range(NUM_FIELDS)]
    click = (torch.rand(n, generator=g) < 0.5).float()
    labels = torch.stack([click, click * (torch.rand(n, generator=g) < 0.4).float()], dim=1)
    weights = torch.ones(n)
    weights[-4:] = 0
    return embeddings, labels, weights


def forward(dense, objective, embeddings, labels, weights):
    out = dense(torch.zeros(len(weights), 0), embeddings, weights)
    return objective(out, labels, weights, torch.zeros(len(weights), dtype=torch.int64))


@pytest.mark.parametrize("variant", ["egean", "esmm", "escm2_ipw", "escm2_dr", "naive_cvr"])
def test_total_loss_is_the_weighted_sum_of_the_variants_terms(variant):
    dense, objective = make(variant)
    loss, outputs = forward(dense, objective, *batch())
    terms = {k[len("loss_"):]: v for k, v in outputs.items() if k.startswith("loss_")}
    expected = {"egean": {"ctr", "cvr", "imputation", "mmd", "exposure", "ctcvr"}, "esmm": {"ctr", "ctcvr"},
                "escm2_ipw": {"ctr", "cvr", "ctcvr"}, "escm2_dr": {"ctr", "cvr", "imputation", "ctcvr"},
                "naive_cvr": {"ctr", "cvr"}}[variant]
    assert set(terms) == expected
    w = objective.method.weights
    torch.testing.assert_close(loss.detach(), sum(getattr(w, k) * v for k, v in terms.items()))
    torch.testing.assert_close(outputs["ctcvr"], outputs["ctr"] * outputs["cvr"])


def test_pvdr_term_trains_no_ctr_tower_and_lambda_follows_the_steps():
    dense, objective = make("egean", pvdr_lambda_start=1.0, pvdr_lambda_steady=0.0, pvdr_lambda_tau=2.0)
    embeddings, labels, weights = batch()
    out = dense(torch.zeros(len(weights), 0), embeddings, weights)
    losses = objective.losses(out, labels[:, 0], labels[:, 1], (weights > 0).float())
    ctr_params = list(dense.branches["ctr"].parameters())
    grads = torch.autograd.grad(losses["cvr"] + losses["imputation"], ctr_params, allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads)
    imputation_params = list(dense.branches["imputation"].parameters())
    grads = torch.autograd.grad(losses["cvr"], imputation_params, allow_unused=True)
    assert all(g is None for g in grads)  # ê is a constant in PVDR (detach_imputation_in_dr)

    assert objective.pvdr_lambda() == 1.0
    objective.train()
    for _ in range(2):
        forward(dense, objective, embeddings, labels, weights)
    assert int(objective.train_steps) == 2 and objective.pvdr_lambda() == pytest.approx(torch.e ** -1)
    objective.eval()
    forward(dense, objective, embeddings, labels, weights)
    assert int(objective.train_steps) == 2  # evaluation does not advance the schedule


@pytest.mark.parametrize("variant, unclicked_rows_train_embedding", [("naive_cvr", False), ("escm2_dr", True)])
def test_only_clicked_rows_train_the_naive_models_embedding(variant, unclicked_rows_train_embedding):
    dense, objective = make(variant)
    embeddings, labels, weights = batch()
    loss, _ = forward(dense, objective, embeddings, labels, weights)
    loss.backward()
    unclicked = (labels[:, 0] == 0) & (weights > 0)
    grad_on_unclicked = sum(float(e.grad[unclicked].abs().sum()) for e in embeddings)
    assert (grad_on_unclicked > 0) == unclicked_rows_train_embedding
    assert all(float(e.grad[weights == 0].abs().sum()) == 0 for e in embeddings)  # padding: nothing
