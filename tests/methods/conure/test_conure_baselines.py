"""Conure's baselines on 2 spawned gloo workers over two real ml-100k tasks: fine-tuning everything
forgets T1 (its outputs change), one model per task keeps T1 but doubles the parameters."""

import json

import torch
from test_conure_tasks import config, learn

from distrec.methods.conure.importers.recbole import import_conure_recbole
from distrec.train.local_spawn import spawn


def run_strategy(tmp_path, data_root, strategy):
    cfg = config(tmp_path, data_root, 2)
    cfg["method"]["strategy"] = strategy
    cfg["run"]["name"] = strategy
    spawn(learn, 2, cfg, timeout_s=300)
    run = tmp_path / "runs" / strategy
    return run, json.loads((run / "conure_state.json").read_text())


def checkpoint_keys(state) -> set[str]:
    from torch.distributed.checkpoint import FileSystemReader

    return set(FileSystemReader(state["tasks"][-1]["checkpoint"]).read_metadata().state_dict_metadata)


def probe(run, stage, task="t1_next_item"):
    return torch.load(run / "probes" / f"stage-{stage:02d}" / f"{task}.pt")


def test_finetune_all_forgets_and_separate_models_cost_a_model_per_task(tmp_path, shared_data):
    data_root = tmp_path / "data"
    import_conure_recbole(str(shared_data / "ml-100k"), str(data_root), max_len=20)

    run, state = run_strategy(tmp_path, data_root, "finetune_all")
    assert [t["name"] for t in state["tasks"]] == ["t1_next_item", "t2_liked_item"]
    assert not torch.equal(probe(run, 1), probe(run, 2))  # T2's training moved T1's outputs
    one_model = state["tasks"][-1]["params"]
    assert state["params"]["total"] == one_model["embedding"] + one_model["backbone"] + sum(one_model["heads"].values())
    keys = checkpoint_keys(state)
    assert any(".conv1.weight" in k for k in keys) and not any(".mask_" in k for k in keys)  # no unused masks

    run, state = run_strategy(tmp_path, data_root, "separate")
    per_task = [t["params"]["embedding"] + t["params"]["backbone"] + sum(t["params"]["heads"].values())
                for t in state["tasks"]]
    assert state["params"]["total"] == sum(per_task)
    assert state["tasks"][0]["params"]["backbone"] == state["tasks"][1]["params"]["backbone"]  # a full copy
    history = state["history"]
    assert history[1]["metrics"]["t1_next_item"] == history[0]["metrics"]["t1_next_item"]  # T1's model untouched
    assert (run / "probes" / "stage-01" / "t1_next_item.pt").is_file()
    assert not any(".mask_" in k for k in checkpoint_keys(state))


def test_finetune_copy_starts_each_task_from_t1_and_keeps_t1(tmp_path, shared_data):
    from test_conure_tasks import checkpoint_tensors

    data_root = tmp_path / "data"
    import_conure_recbole(str(shared_data / "ml-100k"), str(data_root), max_len=20, profiles="")
    cfg = config(tmp_path, data_root, 2)
    cfg["method"]["strategy"] = cfg["run"]["name"] = "finetune_copy"
    cfg["method"]["tasks"][1].update(train_epochs=0, retrain_epochs=0)  # T2: no step, T1's weights as loaded
    spawn(learn, 2, cfg, timeout_s=300)
    state = json.loads((tmp_path / "runs" / "finetune_copy" / "conure_state.json").read_text())
    t1, t2 = (checkpoint_tensors(t["checkpoint"], tmp_path) for t in state["tasks"])
    backbone = [k for k in t1 if k.startswith("dense.backbone")]
    assert backbone and all(torch.equal(t1[k], t2[k]) for k in backbone)
    assert not any(k.startswith("dense.heads.t1_next_item") for k in t2)  # a model of its own per task
    history = state["history"]
    assert history[1]["metrics"]["t1_next_item"] == history[0]["metrics"]["t1_next_item"]
    assert set(history[1]["metrics"]) == {"t1_next_item", "t2_liked_item"}


def test_t1_retrain_can_freeze_embeddings_and_layer_norms(tmp_path, shared_data):
    from test_conure_tasks import checkpoint_tensors

    data_root = tmp_path / "data"
    import_conure_recbole(str(shared_data / "ml-100k"), str(data_root), max_len=20, profiles="")

    def t1_weights(name, retrain_epochs):
        cfg = config(tmp_path, data_root, 1)
        cfg["run"]["name"] = name
        cfg["method"].update(t1_retrain_trains_shared=False, train_epochs=0, retrain_epochs=retrain_epochs)
        spawn(learn, 2, cfg, timeout_s=300)
        state = json.loads((tmp_path / "runs" / name / "conure_state.json").read_text())
        return checkpoint_tensors(state["tasks"][0]["checkpoint"], tmp_path)

    untrained, retrained = t1_weights("untrained", 0), t1_weights("retrained", 1)
    shared = [k for k in untrained if "norm" in k or k.startswith("sparse")]
    convs = [k for k in untrained if k.endswith(".weight") and "conv" in k]
    assert shared and convs
    assert all(torch.equal(untrained[k], retrained[k]) for k in shared)
    assert not all(torch.equal(untrained[k], retrained[k]) for k in convs)  # the masked weights did train
