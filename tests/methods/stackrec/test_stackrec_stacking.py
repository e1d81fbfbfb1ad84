"""StackRec stacking: block maps, copies by value, resets, on real NextItNet/SASRec modules."""

import pytest
import torch
from omegaconf import OmegaConf

from distrec.errors import ConfigError
from distrec.methods.stackrec.config import ModelConfig
from distrec.methods.stackrec.stacking import block_map, part_names, stack_state_dict
from distrec.models.seqrec import SequenceDenseNet

NUM_ITEMS, MAX_LEN, DIM = 30, 12, 8


def dense_net(arch: str, blocks: int, seed: int = 0) -> SequenceDenseNet:
    torch.manual_seed(seed)
    cfg = OmegaConf.structured(ModelConfig(arch=arch, blocks=blocks, embedding_dim=DIM, heads=2))
    return SequenceDenseNet(cfg, NUM_ITEMS, MAX_LEN)


def trained_like(net: SequenceDenseNet) -> SequenceDenseNet:
    """Every parameter set to distinct random values (alphas and LayerNorms included)."""
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p))
    return net


def stacked(arch: str, old_blocks: int, method: str, fresh_parts) -> tuple[SequenceDenseNet, SequenceDenseNet]:
    old = trained_like(dense_net(arch, old_blocks))
    new = dense_net(arch, 2 * old_blocks, seed=1)
    parts = part_names(torch.nn.ModuleDict({"dense": new}))  # keys as in the full model's state
    state = stack_state_dict(_prefixed(old.state_dict()), _prefixed(new.state_dict()), method,
                             fresh_parts, parts)
    new.load_state_dict({k[len("dense."):]: v for k, v in state.items()})
    return old, new


def _prefixed(state: dict) -> dict:
    return {f"dense.{k}": v for k, v in state.items()}


@pytest.mark.parametrize("blocks,adjacent,cross", [
    (2, [0, 0, 1, 1], [0, 1, 0, 1]),
    (3, [0, 0, 1, 1, 2, 2], [0, 1, 2, 0, 1, 2]),
    (4, [0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 2, 3, 0, 1, 2, 3]),
])
def test_block_maps_match_the_spec(blocks, adjacent, cross):
    assert block_map(blocks, "adjacent") == adjacent == [i // 2 for i in range(2 * blocks)]
    assert block_map(blocks, "cross") == cross == [i % blocks for i in range(2 * blocks)]
    with pytest.raises(ConfigError, match="stack_method"):
        block_map(blocks, "interleave")


@pytest.mark.parametrize("arch", ["nextitnet", "sasrec"])
@pytest.mark.parametrize("method", ["adjacent", "cross"])
def test_copy_everything_switch_copies_every_parameter_of_the_source_block(arch, method):
    old, new = stacked(arch, 3, method, fresh_parts=[])
    for i, src in enumerate(block_map(3, method)):
        new_params = dict(new.body.blocks[i].named_parameters())
        for name, value in old.body.blocks[src].named_parameters():
            assert torch.equal(new_params[name], value), f"block {i}.{name} != old block {src}"
    assert torch.equal(new.head.output.weight, old.head.output.weight)


@pytest.mark.parametrize("arch", ["nextitnet", "sasrec"])
def test_default_reset_zeroes_alpha_so_hidden_states_equal_the_inputs(arch):
    old, new = stacked(arch, 2, "adjacent", fresh_parts=["layernorm", "alpha", "output"])
    alphas = [p for n, p in new.named_parameters() if n.rsplit(".", 1)[-1].startswith("alpha")]
    assert len(alphas) == (4 if arch == "nextitnet" else 8) and all(float(a.detach().abs().sum()) == 0 for a in alphas)
    # conv/attention weights are still the trained ones, LayerNorms fresh (1, 0)
    first = dict(new.body.blocks[1].named_parameters())
    for name, value in old.body.blocks[0].named_parameters():
        if "norm" in name:
            assert torch.equal(first[name], torch.ones_like(value) if name.endswith("weight") else torch.zeros_like(value))
        elif not name.startswith("alpha"):
            assert torch.equal(first[name], value)
    assert not torch.equal(new.head.output.weight, old.head.output.weight)
    if arch == "sasrec":
        new.position.weight.data.zero_()  # the stack is the identity on what enters it
    emb = torch.randn(3, MAX_LEN - 1, DIM)
    mask = torch.ones(3, MAX_LEN - 1, dtype=torch.bool)
    assert torch.equal(new.hidden(emb, mask), emb)


def test_stacked_copies_are_values_not_shared_modules():
    old, new = stacked("nextitnet", 2, "adjacent", fresh_parts=[])
    a, b = new.body.blocks[0], new.body.blocks[1]  # both copies of old block 0
    assert torch.equal(a.conv1.conv.weight, b.conv1.conv.weight)
    assert a.conv1.conv.weight.data_ptr() != b.conv1.conv.weight.data_ptr()
    assert a.conv1.conv.weight.data_ptr() != old.body.blocks[0].conv1.conv.weight.data_ptr()
    opt = torch.optim.Adam(new.parameters(), lr=1e-2)
    emb = torch.randn(4, MAX_LEN - 1, DIM)
    hidden = new.hidden(emb, torch.ones(4, MAX_LEN - 1, dtype=torch.bool))
    new.head.loss(hidden.reshape(-1, DIM), torch.randint(1, NUM_ITEMS, (4 * (MAX_LEN - 1),))).backward()
    opt.step()
    assert not torch.equal(a.conv1.conv.weight, b.conv1.conv.weight)
    assert not torch.equal(a.conv1.conv.weight, old.body.blocks[0].conv1.conv.weight)


def test_bad_fresh_part_and_wrong_depth_are_reported():
    old, new = dense_net("nextitnet", 2), dense_net("nextitnet", 3)
    with pytest.raises(ConfigError, match="fresh_parts"):
        stack_state_dict(_prefixed(old.state_dict()), _prefixed(dense_net("nextitnet", 4).state_dict()),
                         "adjacent", ["norms"])
    with pytest.raises(Exception, match="4-block model"):
        stack_state_dict(_prefixed(old.state_dict()), _prefixed(new.state_dict()), "adjacent")
