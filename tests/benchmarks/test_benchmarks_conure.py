"""benchmarks/conure_bytes_per_task.py in tiny mode: the bytes it reports per task are right.

Checked independently of the script: the packed mask bytes against the conv modules of a freshly
built backbone (and the config's arithmetic), the heads against their parameter formulas, a full
model copy against the parameters of distrec's model for that task, and the task sizes against
the raw ../shared/data files. Runs in-process in a few seconds (every model is built on meta).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from test_benchmarks import MACHINE_KEYS  # noqa: E402


def head_params(kind: str, channels: int, n: int) -> int:
    if kind == "next_item":  # untied output layer: Linear(channels, n)
        return n * channels + n
    if kind == "item_rec":  # separator + target table
        return channels + n * channels
    return channels + channels * n + n  # profile: separator + Linear(channels, n)


@pytest.fixture(scope="module")
def report(shared_data, tmp_path_factory):
    from benchmarks import conure_bytes_per_task

    out = tmp_path_factory.mktemp("conure-bytes")
    returned = conure_bytes_per_task.main(["--tiny", "--out-dir", str(out)])
    path = out / "conure_bytes_per_task.json"
    assert path.is_file()
    data = json.loads(path.read_text())
    assert data["benchmark"] == returned["benchmark"] == "conure_bytes_per_task"
    assert MACHINE_KEYS <= set(data["machine"]), MACHINE_KEYS - set(data["machine"])
    assert data["machine"]["gpu"] is False and data["settings"]["tiny"] is True
    return data


def test_presets_and_their_task_sizes(report, shared_data):
    results = report["results"]
    assert list(results) == ["smoke", "ttl", "cluster-1b"]
    assert [r["data"]["assumed"] for r in results.values()] == [False, False, True]
    # smoke: tasks built from ml-100k by its method.prepare importer
    with open(shared_data / "ml-100k" / "ml-100k.inter") as fh:
        items = {row[1] for row in list(csv.reader(fh, delimiter="\t"))[1:]}
    smoke = {t["name"]: t for t in results["smoke"]["tasks"]}
    assert results["smoke"]["data"]["num_items"] == len(items) + 1  # ids 1..n, 0 = padding
    assert smoke["t1_next_item"]["num_outputs"] == len(items) + 1
    assert smoke["t2_liked_item"]["num_outputs"] == len(items) + 1  # same ids, a table of its own
    assert smoke["t3_gender"]["num_outputs"] == 2
    # ttl: the example files (source ids and T2 targets)
    def lines(name):
        text = (shared_data / "ttl-example" / name).read_text()
        return [line.strip().split(",") for line in text.splitlines() if line.strip()]

    src = [int(v) for fields in lines("example_task1.csv") for v in fields[:100] if v]  # T1's vocabulary
    tgt = [int(v) for fields in lines("example_task2.csv") for v in fields[101:] if v]
    assert results["ttl"]["data"]["num_items"] == max(src) + 1
    assert results["ttl"]["tasks"][1] == {"name": "t2_item_rec", "kind": "item_rec", "num_outputs": max(tgt) + 1}
    # cluster-1b: the preset's 4M-item table (assumed: its data is on S3)
    assert results["cluster-1b"]["data"]["num_items"] == 4_000_000
    assert [t["name"] for t in results["cluster-1b"]["tasks"]] == ["t1_next_item", "t2_item_rec", "t3_gender", "t4_age"]


def test_bytes_per_task_match_independent_counts(report):
    from distrec.data.schema import FeatureSchema, SequenceField
    from distrec.methods import load_config
    from distrec.methods.conure.backbone import ConureBackbone
    from distrec.methods.conure.masks import MaskedCausalConv1d
    from distrec.methods.conure.model import TaskSpec
    from distrec.methods.conure.recipe import build_model

    for name, r in report["results"].items():
        cfg = load_config(str(REPO / r["config"]))
        c, blocks, k = cfg.model.channels, cfg.model.blocks, cfg.model.kernel_size
        with torch.device("meta"):
            backbone = ConureBackbone(cfg.model, 1)
        convs = [m for m in backbone.modules() if isinstance(m, MaskedCausalConv1d)]
        assert len(convs) == 2 * blocks
        conv_weights = sum(m.weight.numel() for m in convs)
        mask_bytes = sum(math.ceil(m.weight.numel() / 8) for m in convs)
        assert conv_weights == 2 * blocks * c * c * k == r["model"]["conv_weights"]
        assert mask_bytes == math.ceil(conv_weights / 8)  # channels are a multiple of 8 here
        schema = FeatureSchema(sparse=(), labels=(), sequence=(
            SequenceField("item_seq", max_len=r["data"]["max_len"], num_embeddings=r["data"]["num_items"]),))
        n_items = r["data"]["num_items"]
        backbone_params = conv_weights + blocks * 2 * 2 * c  # convs (no bias) + 2 LayerNorms per block

        rows = [r["first_task"], *r["per_task"]]
        assert [row["task"] for row in rows] == [t["name"] for t in r["tasks"]]
        assert len(r["per_task"]) == len(r["tasks"]) - 1 >= 1
        for row in r["per_task"]:
            conure, finetune, separate = row["conure"], row["finetune_all"], row["separate"]
            head = 4 * head_params(row["kind"], c, row["num_outputs"])  # fp32
            assert conure["mask_bytes"] == mask_bytes and conure["mask_layers"] == 2 * blocks, (name, row["task"])
            assert conure["head_bytes"] == head, (name, row["task"])
            assert conure["other_bytes"] == 0
            assert conure["bytes"] == mask_bytes + head
            # a full model copy: every parameter of distrec's model for this task alone
            with torch.device("meta"):
                model = build_model(cfg, schema, [TaskSpec(row["task"], row["kind"], row["num_outputs"])])
            copy = sum(p.numel() * p.element_size() for p in model.parameters())
            assert separate["bytes"] == copy == 4 * (n_items * c + backbone_params + head_params(
                row["kind"], c, row["num_outputs"])), (name, row["task"])
            assert conure["bytes"] < separate["bytes"]
            assert conure["fraction_of_full_copy"] == pytest.approx(conure["bytes"] / separate["bytes"])
            assert finetune["backbone_and_embedding_bytes"] == 0 and finetune["bytes"] == head
            # the baselines keep no masks: their checkpoints hold parameters only
            assert separate["checkpoint_bytes"] == separate["bytes"], (name, row["task"])
            k = rows.index(row) + 1
            assert finetune["checkpoint_bytes"] == 4 * (n_items * c + backbone_params + sum(
                head_params(t["kind"], c, t["num_outputs"]) for t in r["tasks"][:k])), (name, row["task"])
            assert "forgotten" in finetune["old_tasks"]
        # T1 is the whole first model (its mask included); totals add up
        first = r["first_task"]
        t1_params = n_items * c + backbone_params + head_params("next_item", c, n_items)
        assert first["conure"]["bytes"] == 4 * t1_params + mask_bytes
        totals = r["totals_after_all_tasks"]
        assert totals["conure"] == sum(row["conure"]["bytes"] for row in rows)
        assert totals["separate"] == sum(row["separate"]["bytes"] for row in rows)
        assert totals["conure"] < totals["separate"]
