"""Conure's masked conv kernels, pruning among free weights, frozen entries under AdamW with
weight decay, and mask bit-packing (single process)."""

import math

import pytest
import torch

from distrec.methods.conure.masks import (
    FrozenEntryGuard,
    MaskedCausalConv1d,
    pack_bits,
    packed_size,
    prune_free_weights,
    unpack_bits,
)


def conv_with_masks(seed=0, channels=4):
    torch.manual_seed(seed)
    conv = MaskedCausalConv1d(channels, 3, 2, num_tasks=3)
    g = torch.Generator().manual_seed(seed + 1)
    owner = torch.randint(0, 4, conv.weight.shape, generator=g)  # 0 free, 1/2/3 task masks
    for k in (1, 2):
        conv.set_mask(k, owner == k)
    return conv, owner


def test_kernels_follow_the_spec_formulas():
    conv, owner = conv_with_masks()
    w = conv.weight.detach()
    frozen = ((owner == 1) | (owner == 2)).float()  # F_3 = m_1 ∪ m_2
    conv.set_mask(3, owner == 3)
    conv.task = 3
    for phase, expected in (("train", w * frozen + w * (1 - frozen)),
                            ("retrain", w * frozen + w * (owner == 3).float()),
                            ("plain", w)):
        conv.phase = phase
        assert torch.equal(conv.kernel(), expected), phase
    conv.phase, conv.task = "infer", 2
    assert torch.equal(conv.kernel(), w * ((owner == 1) | (owner == 2)).float())
    # causal: the output at t never depends on inputs after t
    x = torch.randn(2, 4, 9)
    y = conv(x)
    x2 = x.clone()
    x2[..., 6:] += 1.0
    assert torch.equal(conv(x2)[..., :6], y[..., :6])


@pytest.mark.parametrize("phase", ["train", "retrain"])
def test_frozen_weights_get_exactly_zero_gradient(phase):
    conv, owner = conv_with_masks()
    conv.set_mask(3, owner == 3)
    conv.task, conv.phase = 3, phase
    conv(torch.randn(3, 4, 7)).square().sum().backward()
    grad = conv.weight.grad
    frozen = (owner == 1) | (owner == 2)
    assert torch.count_nonzero(grad[frozen]) == 0
    trainable = (owner == 3) if phase == "retrain" else ~frozen
    assert torch.count_nonzero(grad[trainable]) > 0
    if phase == "retrain":  # pruned free weights are out of the kernel too
        assert torch.count_nonzero(grad[owner == 0]) == 0


def test_pruning_keeps_the_configured_share_of_free_weights_only():
    conv, owner = conv_with_masks()
    frozen = (owner == 1) | (owner == 2)
    mask = prune_free_weights(conv.weight, frozen, prune_ratio=0.7)
    n_free = int((~frozen).sum())
    assert int(mask.sum()) == round(0.3 * n_free)
    assert not (mask & frozen).any()  # only free weights are chosen
    free_mag = conv.weight.detach().abs()[~frozen]
    kept_mag = conv.weight.detach().abs()[mask]
    dropped = free_mag.sort(descending=True).values[int(mask.sum()):]
    assert kept_mag.min() >= dropped.max()  # the largest magnitudes among the free ones


def test_adamw_weight_decay_never_moves_frozen_entries():
    conv, owner = conv_with_masks()
    conv.set_mask(3, owner == 3)
    conv.task, conv.phase = 3, "train"
    frozen = (owner == 1) | (owner == 2)
    before = conv.weight.detach().clone()
    opt = torch.optim.AdamW([conv.weight], lr=0.1, weight_decay=0.5)
    guard = FrozenEntryGuard([conv], frozen_upto=2)
    for _ in range(3):
        opt.zero_grad()
        conv(torch.randn(3, 4, 7)).square().sum().backward()
        opt.step()
        guard.restore()
    after = conv.weight.detach()
    assert torch.equal(after[frozen], before[frozen])
    assert not torch.equal(after[~frozen], before[~frozen])
    state = opt.state[conv.weight]
    assert torch.count_nonzero(state["exp_avg"][frozen]) == 0
    assert torch.count_nonzero(state["exp_avg_sq"][frozen]) == 0

    # the guard is what keeps them: the same step without it decays frozen entries
    opt.zero_grad()
    conv(torch.randn(3, 4, 7)).square().sum().backward()
    opt.step()
    assert not torch.equal(conv.weight.detach()[frozen], before[frozen])


@pytest.mark.parametrize("shape", [(4, 4, 3), (5, 3, 3), (1, 1, 1)])
def test_bit_packing_round_trip_and_size(shape):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(3)) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_size(math.prod(shape))
    assert packed.numel() * 8 <= math.prod(shape) + 7  # at most 1 bit per weight (+ byte padding)
    assert torch.equal(unpack_bits(packed, torch.Size(shape)), mask)
