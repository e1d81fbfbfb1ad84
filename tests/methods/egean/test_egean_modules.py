"""EGEAN building blocks: MMD, PEPNet gates and their stop-gradients, LoRA, exposure negatives."""

import torch
from torch import nn

from distrec.methods.egean.losses import mmd2_rbf
from distrec.methods.egean.modules import (
    EmbeddingGate,
    EmbeddingLora,
    ExposureHead,
    Tower,
    TowerGates,
    shuffled_negatives,
)


def test_mmd_is_zero_for_identical_samples_and_grows_with_the_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    assert abs(float(mmd2_rbf(x, x.clone()))) < 1e-6
    same_distribution = float(mmd2_rbf(x, torch.randn(128, 8, generator=g)))
    shifted = [float(mmd2_rbf(x, torch.randn(128, 8, generator=g) + s)) for s in (0.5, 1.0, 2.0)]
    assert shifted[0] > 0 and shifted == sorted(shifted)
    assert shifted[0] > 3 * same_distribution  # a shift stands out from sampling noise
    assert float(mmd2_rbf(x[:0], x)) == 0.0  # no clicked rows: nothing to align


def test_mmd_matches_the_kernel_formula():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    pooled = torch.cat([x, y])
    d2 = torch.cdist(pooled, pooled) ** 2
    h = d2[~torch.eye(12, dtype=torch.bool)].median()
    k = torch.exp(-d2 / h)
    expected = k[:5, :5].mean() + k[5:, 5:].mean() - 2 * k[:5, 5:].mean()
    torch.testing.assert_close(mmd2_rbf(x, y), expected)


def randomise(module: nn.Module) -> nn.Module:
    """Gates start as the identity (zero last layer); give them real weights for gradient checks."""
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p, std=0.5)
    return module


def test_embedding_gate_gets_no_gradient_into_its_input():
    gate = randomise(EmbeddingGate(width=12, task_dim=4, hidden=16, scale=2.0))
    personal = torch.randn(6, 12, requires_grad=True)
    weights = torch.randn(6, 12)
    gated, delta = gate(personal)
    (gated * weights).sum().backward()
    # O_t = δ_t ⊙ E_t with δ_t = gate(task ⊕ stopgrad(E_t)): dL/dE_t = w ⊙ δ_t, nothing through δ_t
    torch.testing.assert_close(personal.grad, weights * delta.detach())
    assert gate.task.grad is not None and gate.task.grad.abs().sum() > 0  # the gate itself learns
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gate.gate.parameters())
    assert float(delta.detach().min()) > 0 and float(delta.detach().max()) < 2.0


def test_tower_gates_get_no_gradient_into_the_gated_embedding():
    tower = randomise(Tower(12, [16, 8], slope=0.01))
    gates = randomise(TowerGates(12, tower.widths, hidden=16, scale=2.0))
    gated = torch.randn(6, 12, requires_grad=True)
    loss = tower(gated, gates(gated)).sum()
    grad_with_gates = torch.autograd.grad(loss, gated)[0]
    # the same forward with the gate values frozen as constants: equal iff the gates are stopgrad(O_t)
    frozen = [gv.detach() for gv in gates(gated)]
    leaf = gated.detach().requires_grad_()
    grad_frozen = torch.autograd.grad(tower(leaf, frozen).sum(), leaf)[0]
    torch.testing.assert_close(grad_with_gates, grad_frozen)
    only_gates = sum(gv.sum() for gv in gates(gated))
    assert torch.autograd.grad(only_gates, gated, allow_unused=True)[0] is None
    param_grads = torch.autograd.grad(tower(gated, gates(gated)).sum(), list(gates.parameters()))
    assert all(g.abs().sum() > 0 for g in param_grads)


def test_gates_start_as_identity():
    gate = EmbeddingGate(width=12, task_dim=4, hidden=16, scale=2.0)
    x = torch.randn(3, 12)
    gated, delta = gate(x)
    torch.testing.assert_close(delta, torch.ones_like(delta))
    torch.testing.assert_close(gated, x)


def test_lora_starts_at_the_shared_embedding_and_learns_a_low_rank_update():
    lora = EmbeddingLora(width=20, rank=3, alpha=3.0)
    x = torch.randn(4, 20)
    torch.testing.assert_close(lora(x), x)
    nn.init.normal_(lora.up.weight)
    delta = lora(x) - x
    assert torch.linalg.matrix_rank(delta @ torch.randn(20, 20)) <= 3
    torch.testing.assert_close(delta, x @ lora.down.weight.T @ lora.up.weight.T)


def test_shuffled_negatives_permute_real_rows_only():
    fields = torch.arange(8 * 3 * 2, dtype=torch.float32).view(8, 3, 2)
    real = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    neg = shuffled_negatives(fields, real, [[0], [1, 2]], generator=gen)
    assert neg.shape == (6, 3, 2)
    for f in range(3):  # each field's vectors are a permutation of the real rows' vectors
        got = sorted(map(tuple, neg[:, f].tolist()))
        assert got == sorted(map(tuple, fields[:6, f].tolist()))
    # fields 1 and 2 are shuffled together: they still come from the same source row
    src1 = (neg[:, 1, 0] - fields[0, 1, 0]) / 6
    src2 = (neg[:, 2, 0] - fields[0, 2, 0]) / 6
    torch.testing.assert_close(src1, src2)
    kept = shuffled_negatives(fields, real, [], generator=gen)  # no group: rows unchanged
    torch.testing.assert_close(kept, fields[:6])


def test_exposure_head_loss_trains_on_positives_and_negatives():
    head = ExposureHead(num_fields=3, dim=2, widths=[8], slope=0.01, shuffle_groups=[[0], [1], [2]])
    fields = torch.randn(10, 3, 2, requires_grad=True)
    real = torch.ones(10)
    loss = head.loss(fields, real)
    loss.backward()
    assert torch.isfinite(loss) and fields.grad.abs().sum() > 0
