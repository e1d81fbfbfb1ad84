"""MSD on a RecBole atomic dataset laid out like Amazon's (no .user file; item columns sales_type,
sales_rank, categories, title, price, brand), built from real ml-100k rows: the prompt roles
are found by column name, the other columns become attributes, and knowledge is written for
every entity with the catalog prompts (configs/msd/recbole.yaml)."""

import csv

import pytest
from omegaconf import OmegaConf

from distrec.errors import ConfigError, DataError
from distrec.methods import load_config
from distrec.methods.msd.data import ensure_imported
from distrec.methods.msd.entities import load_catalog, load_items
from distrec.methods.msd.knowledge import read_knowledge, run_knowledge_job
from distrec.methods.msd.prompts import load_prompt

ITEM_HEADER = ["item_id:token", "sales_type:token", "sales_rank:float", "categories:token_seq",
               "title:token", "price:float", "brand:token"]


def write_amazon_like(shared_data, folder):
    """amz.inter = ml-100k's interactions; amz.item = each movie as a catalog item."""
    folder.mkdir(parents=True)
    with open(shared_data / "ml-100k" / "ml-100k.item") as fh:
        movies = list(csv.reader(fh, delimiter="\t"))[1:]
    items = {}
    with open(folder / "amz.item", "w") as fh:
        fh.write("\t".join(ITEM_HEADER) + "\n")
        for i, (item_id, title, _year, genres) in enumerate(movies):
            row = [item_id, "Video", str(i * 7 % 5000), genres, title, f"{i % 50 + 0.99:.2f}", f"studio{i % 30}"]
            items[item_id] = row
            fh.write("\t".join(row) + "\n")
    (folder / "amz.inter").write_text((shared_data / "ml-100k" / "ml-100k.inter").read_text())
    return items


@pytest.fixture()
def amazon_cfg(tmp_path, shared_data):
    items = write_amazon_like(shared_data, tmp_path / "raw" / "amz")
    data = tmp_path / "data"
    cfg = load_config("configs/msd/recbole.yaml", [
        f"data.train={data}/train", f"data.valid={data}/valid", f"data.schema={data}/schema.yaml",
        f"method.entities.items_path={data}/items.parquet", f"method.entities.users_path={data}/users.parquet",
        f"method.entities.sequences_path={data}/sequences", f"method.entities.import_from={tmp_path}/raw/amz",
        "method.entities.import_max_users=25", f"method.knowledge.output={tmp_path}/knowledge",
        "method.knowledge.teacher.kind=metadata", "method.knowledge.engine=local", "method.knowledge.part_size=500",
        f"run.output_dir={tmp_path}/runs",
    ])
    ensure_imported(cfg)
    return cfg, items


def test_item_roles_come_from_column_names_and_the_rest_are_attributes(amazon_cfg):
    cfg, raw = amazon_cfg
    catalog = load_catalog(cfg.method.entities, cfg.data.train)
    assert len(catalog.items) == len(raw) and len(catalog.users) == 25
    toy = catalog.items[1]  # item ids follow the .item file's order: id 1 is its first row
    first = next(iter(raw.values()))
    assert toy.fields["title"] == first[4]
    assert toy.fields["genres"] == ", ".join(first[3].split())
    assert toy.fields["year"] == ""
    assert toy.fields["attributes"] == (f"sales type: Video; sales rank: {float(first[2]):g}; "
                                        f"price: {float(first[5]):g}; brand: {first[6]}")
    user = next(iter(catalog.users.values()))
    assert user.fields["profile"] == "no profile data"  # the dataset has no .user file
    assert user.fields["top_genres"]  # from the categories of the user's liked items


def test_knowledge_for_every_entity_with_the_catalog_prompts(amazon_cfg):
    cfg, _ = amazon_cfg
    catalog = load_catalog(cfg.method.entities, cfg.data.train)
    prompts = {level: load_prompt(path) for level, path in cfg.method.knowledge.prompts.items()}
    for item in catalog.items.values():
        text = prompts["item"].render(item.fields)
        assert item.fields["title"] in text and item.fields["attributes"] in text
    for user in catalog.users.values():
        assert user.fields["history"] in prompts["user"].render(user.fields)
    # the film prompts ask for a demographic field this dataset does not have: named in the error
    film_user = load_prompt("configs/msd/prompts/user.yaml")
    with pytest.raises(ConfigError, match=r"placeholder \{occupation\} is not a field of this entity"):
        film_user.prefix(next(iter(catalog.users.values())).fields)

    assert run_knowledge_job(cfg)["written"] == len(catalog.items) + len(catalog.users)
    records = {(r["level"], r["id"]): r["text"] for r in read_knowledge(cfg.method.knowledge.output).to_pylist()}
    assert set(records) == {("item", i) for i in catalog.items} | {("user", u) for u in catalog.users}
    toy = catalog.items[1]
    assert toy.fields["title"] in records[("item", 1)] and "brand: studio0" in records[("item", 1)]
    assert "film" not in records[("item", 1)]  # no year: catalog wording, not the movie one


def test_configured_item_columns_override_and_unknown_ones_are_named(amazon_cfg):
    cfg, raw = amazon_cfg
    chosen = OmegaConf.create({"title": "brand", "year": None, "genres": "sales_type"})
    items = load_items(cfg.method.entities.items_path, chosen)
    first = next(iter(raw.values()))
    assert items[1].fields["title"] == first[6] and items[1].fields["genres"] == "Video"
    assert "title: " + first[4] in items[1].fields["attributes"]
    wrong = OmegaConf.create({"title": "name_of_book", "year": None, "genres": None})
    with pytest.raises(DataError, match=r"items\.parquet: method\.entities\.item_columns\.title='name_of_book' "
                                        r"is not a column of the items"):
        load_items(cfg.method.entities.items_path, wrong)


def test_movielens_roles_are_unchanged(tmp_path, shared_data):
    from test_msd_knowledge import slice_config

    cfg = slice_config(tmp_path, shared_data)
    ensure_imported(cfg)
    toy = load_items(cfg.method.entities.items_path)[1]
    assert (toy.fields["title"], toy.fields["year"]) == ("Toy Story", "1995")
    assert toy.fields["genres"] == "Animation, Children's, Comedy" and toy.fields["attributes"] == ""
