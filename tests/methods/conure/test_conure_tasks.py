"""Conure's task loop on 2 spawned gloo workers over real ml-100k tasks: T1, T2 learned, then a
second invocation adds T3 without retraining them. Old tasks' outputs stay bit-identical; masks
are disjoint, keep the configured share, and survive the checkpoint round trip bit-exactly."""

import json
import math

import pytest
import torch
from omegaconf import OmegaConf
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from distrec.methods import load_config
from distrec.methods.conure.importers.recbole import import_conure_recbole
from distrec.methods.conure.masks import packed_size, unpack_bits
from distrec.train.local_spawn import spawn

TASKS = ["t1_next_item", "t2_liked_item", "t3_gender"]
RATIO = 0.6


def learn(rank, cfg_dict):
    from distrec.methods.conure.recipe import train_worker

    return train_worker(OmegaConf.create(cfg_dict))


def config(tmp_path, data_root, n_tasks):
    cfg = load_config("configs/conure/smoke.yaml", [
        f"run.output_dir={tmp_path / 'runs'}", f"method.data_root={data_root}",
        "method.max_steps_per_phase=4", f"method.prune_ratio={RATIO}", "dense.weight_decay=0.1",
        "trainer.log_every=100",
    ])
    d = OmegaConf.to_container(cfg, resolve=True)
    d["method"]["tasks"] = d["method"]["tasks"][:n_tasks]
    return d


def checkpoint_tensors(path, tmp_path):
    target = tmp_path / f"{abs(hash(path))}.pt"
    dcp_to_torch_save(path, target)
    return torch.load(target)["model"]


@pytest.fixture(scope="module")
def learned(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conure")
    data_root = tmp / "data"
    import_conure_recbole(str(shared_data / "ml-100k"), str(data_root), max_len=20)
    first = spawn(learn, 2, config(tmp, data_root, 2), timeout_s=300)
    second = spawn(learn, 2, config(tmp, data_root, 3), timeout_s=300)
    run = tmp / "runs" / "conure-smoke"
    return tmp, run, json.loads((run / "conure_state.json").read_text()), first, second


def test_old_tasks_outputs_are_bit_identical_after_new_tasks(learned):
    _, run, state, first, second = learned
    assert [t["name"] for t in state["tasks"]] == TASKS
    for stage, name in ((1, "t1_next_item"), (2, "t2_liked_item")):
        own = torch.load(run / "probes" / f"stage-{stage:02d}" / f"{name}.pt")
        assert own.shape[0] > 0 and torch.isfinite(own[:, 1:]).all()
        for later in range(stage + 1, 4):
            assert torch.equal(torch.load(run / "probes" / f"stage-{later:02d}" / f"{name}.pt"), own)
    # the second invocation learned only T3: T1/T2's recorded metrics did not change
    hist = state["history"]
    assert [h["task"] for h in hist] == TASKS
    assert hist[2]["metrics"]["t1_next_item"] == hist[0]["metrics"]["t1_next_item"]
    assert hist[2]["metrics"]["t2_liked_item"] == hist[1]["metrics"]["t2_liked_item"]
    assert 0.0 <= second[0]["t3_gender/accuracy"] <= 1.0 and "t2_liked_item/mrr@5" in first[0]


def test_masks_disjoint_keep_ratio_and_survive_checkpoints(learned):
    tmp, _, state, _, _ = learned
    final = checkpoint_tensors(state["tasks"][2]["checkpoint"], tmp)
    stage1 = checkpoint_tensors(state["tasks"][0]["checkpoint"], tmp)
    weights = [k for k in final if k.startswith("dense.backbone") and k.endswith(".weight") and "conv" in k]
    assert len(weights) == 4
    meta = FileSystemReader(state["tasks"][2]["checkpoint"]).read_metadata().state_dict_metadata
    kept_total = [0, 0, 0]
    for key in weights:
        layer = key[: -len(".weight")]
        shape = final[key].shape
        masks = []
        for k in (1, 2, 3):
            packed = final[f"{layer}.mask_{k}"]
            stored = meta[f"model.{layer}.mask_{k}"]
            assert packed.dtype == torch.uint8 and tuple(stored.size) == (packed_size(math.prod(shape)),)
            masks.append(unpack_bits(packed, shape))
        union = torch.zeros(shape, dtype=torch.bool)
        for k, mask in enumerate(masks):
            assert not (mask & union).any()  # disjoint from every earlier task
            free = int((~union).sum())
            assert int(mask.sum()) == round((1 - RATIO) * free)  # pruning kept the configured share
            kept_total[k] += int(mask.sum())
            union |= mask
        # T1's mask written at stage 1 reads back bit-exactly after two more stages and loads
        assert torch.equal(stage1[f"{layer}.mask_1"], final[f"{layer}.mask_1"])
        # T1's weights (its mask) never moved, despite AdamW with weight decay 0.1 later on
        assert torch.equal(stage1[key][masks[0]], final[key][masks[0]])
    assert kept_total == [t["masks"]["kept"] for t in state["tasks"]]
