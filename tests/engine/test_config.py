"""Config loading: composition, overrides, unknown keys, types, missing values, saving."""

import os
import textwrap

import pytest
from omegaconf import OmegaConf

from distrec.config.load import (
    config_to_dict,
    redact_secrets,
    run_dir,
    save_resolved_config,
)
from distrec.config.schema import (
    ComputeKernel,
    CtrArch,
    CtrModelConfig,
    EmbeddingShardingType,
    TableShardingConfig,
)
from distrec.errors import ConfigError
from distrec.methods import load_config

REQUIRED = """
data:
  schema: schema.yaml
  train: train/
"""


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def minimal(tmp_path):
    return write(tmp_path / "configs" / "ctr" / "small.yaml", REQUIRED)


def load_error(tmp_path, text, overrides=()):
    path = write(tmp_path / "bad.yaml", REQUIRED + textwrap.dedent(text))
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return path, str(info.value)


# --- composition and precedence ----------------------------------------------------------------


def test_defaults_and_overrides_precedence(tmp_path):
    write(
        tmp_path / "configs" / "base.yaml",
        """
        data:
          schema: schema.yaml
          train: base_train/
          batch_size: 64
        trainer:
          num_workers: 4
          epochs: 3
          log_every: 7
        model:
          embedding_dim: 8
        """,
    )
    child = write(
        tmp_path / "configs" / "ctr" / "small.yaml",
        """
        defaults: [../base.yaml]
        run:
          name: small
        trainer:
          num_workers: 3
          epochs: 5
        sharding:
          tables:
            t_user_id:
              sharding_types: [table_wise]
        """,
    )
    cfg = load_config(
        child,
        [
            "trainer.num_workers=2",
            "data.synth.rows=100",
            "sharding.tables.t_user_id.sharding_types=[row_wise]",
            "run.init_from=null",
            "dense.lr=1e-2",
        ],
    )
    assert cfg.trainer.num_workers == 2  # override beats child beats base
    assert cfg.trainer.epochs == 5  # child beats base
    assert cfg.trainer.log_every == 7  # base only
    assert cfg.data.batch_size == 64
    assert cfg.data.train == "base_train/"  # relative paths left as written
    assert cfg.model.embedding_dim == 8
    assert cfg.model.arch == "dcn"  # CtrModelConfig default
    assert OmegaConf.get_type(cfg.model) is CtrModelConfig
    assert cfg.data.synth.rows == 100 and cfg.data.synth.valid_rows == 4000
    assert list(cfg.sharding.tables.t_user_id.sharding_types) == ["row_wise"]
    assert OmegaConf.get_type(cfg.sharding.tables.t_user_id) is TableShardingConfig
    assert cfg.run.init_from is None
    assert cfg.dense.lr == pytest.approx(0.01)
    assert "defaults" not in cfg
    assert run_dir(cfg) == os.path.join("runs", "small")


def test_nested_defaults_merge_in_order(tmp_path):
    write(tmp_path / "a.yaml", "trainer: {epochs: 1, log_every: 1}\n")
    write(tmp_path / "b.yaml", "defaults: [a.yaml]\ntrainer: {epochs: 2}\n")
    write(tmp_path / "c.yaml", "trainer: {epochs: 3, max_steps: 9}\n")
    top = write(tmp_path / "top.yaml", "defaults: [b.yaml, c.yaml]\n" + REQUIRED)
    cfg = load_config(top)
    assert (cfg.trainer.epochs, cfg.trainer.log_every, cfg.trainer.max_steps) == (3, 1, 9)


def test_interpolation_keeps_working(tmp_path):
    path = write(tmp_path / "i.yaml", REQUIRED + "run:\n  name: ${run.recipe}_x\n")
    cfg = load_config(path, ["run.recipe=ctr"])
    assert cfg.run.name == "ctr_x"
    assert config_to_dict(cfg)["run"]["name"] == "ctr_x"


# --- unknown keys ------------------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path):
    path, msg = load_error(tmp_path, "trainr:\n  num_workers: 2\n")
    assert "'trainr'" in msg and path in msg and "trainer" in msg


def test_unknown_nested_key_in_file(tmp_path):
    path, msg = load_error(tmp_path, "trainer:\n  num_wokers: 2\n")
    assert "unknown config key 'trainer.num_wokers'" in msg
    assert path in msg
    assert "num_workers" in msg


def test_unknown_key_in_default_file_names_that_file(tmp_path):
    base = write(tmp_path / "base.yaml", "trainer:\n  num_wokers: 2\n")
    top = write(tmp_path / "top.yaml", "defaults: [base.yaml]\n" + REQUIRED)
    with pytest.raises(ConfigError, match="unknown config key 'trainer.num_wokers'") as info:
        load_config(top)
    assert base in str(info.value)


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path):
    _, msg = load_error(tmp_path, "metrics:\n  zzzzzz: 1\n")
    assert "metrics.zzzzzz" in msg and "names" in msg and "ks" in msg and "tensorboard" in msg


def test_unknown_key_in_override(minimal):
    with pytest.raises(ConfigError) as info:
        load_config(minimal, ["trainer.num_wokers=2"])
    msg = str(info.value)
    assert "command line" in msg and "unknown config key 'trainer.num_wokers'" in msg and "num_workers" in msg


def test_override_without_equals(minimal):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(minimal, ["trainer.num_workers"])


def test_unknown_key_in_table_sharding(tmp_path):
    path, msg = load_error(
        tmp_path,
        """
        sharding:
          tables:
            any_table:
              sharding_type: [row_wise]
        """,
    )
    assert "unknown config key 'sharding.tables.any_table.sharding_type'" in msg and path in msg
    assert "sharding_types" in msg


def test_unknown_key_in_synth(tmp_path):
    path, msg = load_error(tmp_path, "data:\n  synth:\n    rowz: 10\n")
    assert "unknown config key 'data.synth.rowz'" in msg and path in msg and "rows" in msg


def test_synth_null_is_accepted(tmp_path):
    path = write(tmp_path / "s.yaml", REQUIRED.replace("train: train/", "train: t/\n  synth: null"))
    assert load_config(path).data.synth is None


def test_unknown_key_in_model(tmp_path):
    path, msg = load_error(tmp_path, "model:\n  embeding_dim: 8\n")
    assert "unknown config key 'model.embeding_dim'" in msg and path in msg and "embedding_dim" in msg


def test_unknown_key_in_model_override(minimal):
    with pytest.raises(ConfigError, match="unknown config key 'model.cross_layer'.*cross_layers") as info:
        load_config(minimal, ["model.cross_layer=3"])
    assert "command line" in str(info.value)


def test_unknown_key_in_a_list_of_sections(tmp_path):
    path = recipe_file(tmp_path, "stackrec")
    with pytest.raises(ConfigError, match=r"unknown config key 'method\.stages\[1\]\.block' .*did you mean: blocks"):
        load_config(path, ["method.stages=[{blocks: 2}, {block: 4}]"])


def test_unknown_recipe(minimal):
    with pytest.raises(ConfigError, match="known recipes: .*ctr"):
        load_config(minimal, ["run.recipe=nope"])


# --- types and missing values ------------------------------------------------------------------


def test_wrong_type_names_key_file_type_and_value(tmp_path):
    path, msg = load_error(tmp_path, "trainer:\n  num_workers: two\n")
    assert "trainer.num_workers" in msg and path in msg and "int" in msg and "two" in msg


def test_wrong_type_in_override(minimal):
    with pytest.raises(ConfigError, match="command line") as info:
        load_config(minimal, ["model.embedding_dim=big"])
    assert "model.embedding_dim" in str(info.value) and "big" in str(info.value)


def test_section_given_a_scalar(tmp_path):
    _, msg = load_error(tmp_path, "trainer: 5\n")
    assert "trainer" in msg and "mapping" in msg


def test_missing_required_value(tmp_path):
    path = write(tmp_path / "m.yaml", "data:\n  schema: s.yaml\n")
    with pytest.raises(ConfigError, match=r"data\.train"):
        load_config(path)
    assert load_config(path, ["data.train=x/"]).data.train == "x/"


# --- choice fields ---------------------------------------------------------------------------

CTR_ARCHS = "dcn, deepfm, dlrm"
SHARDING_TYPES = "table_wise, row_wise, column_wise, table_row_wise, table_column_wise, data_parallel"
BAD_CHOICES = [  # (recipe, override with a bad value, the key reported, the value, the allowed values)
    ("ctr", "model.arch=dcnn", "model.arch", "dcnn", CTR_ARCHS),
    ("ctr", "dense.backend=horovod", "dense.backend", "horovod", "ddp, deepspeed"),
    ("ctr", "dense.optimizer=lamb", "dense.optimizer", "lamb", "adam, adamw, sgd, adagrad"),
    ("ctr", "dense.precision=fp16", "dense.precision", "fp16", "fp32, bf16"),
    ("ctr", "embedding_optimizer.type=rowwise_adagrad", "embedding_optimizer.type", "rowwise_adagrad",
     "exact_rowwise_adagrad, exact_adagrad, exact_sgd, adam"),
    ("ctr", "trainer.placement_strategy=pack", "trainer.placement_strategy", "pack",
     "PACK, SPREAD, STRICT_PACK, STRICT_SPREAD"),
    ("ctr", "trainer.nan_policy=ignore", "trainer.nan_policy", "ignore", "error, skip"),
    ("ctr", "trainer.early_stopping.mode=maximize", "trainer.early_stopping.mode", "maximize", "max, min"),
    ("ctr", "metrics.names=[auc,acu]", "metrics.names[1]", "acu", "auc, gauc, logloss, hr, mrr, ndcg"),
    ("ctr", "sharding.default_types=[row_wise,rw]", "sharding.default_types[1]", "rw", SHARDING_TYPES),
    ("ctr", "sharding.tables.t_user.sharding_types=[tw]", "sharding.tables.t_user.sharding_types[0]", "tw",
     SHARDING_TYPES),
    ("msd", "model.arch=dlrmm", "model.arch", "dlrmm", CTR_ARCHS),
    ("egean", "model.variant=escm2", "model.variant", "escm2", "egean, esmm, escm2_ipw, escm2_dr, naive_cvr"),
    ("egean", "method.mmd_embedding=both", "method.mmd_embedding", "both", "gated, lora"),
    ("conure", "method.strategy=finetune", "method.strategy", "finetune", "conure, finetune_all, separate, finetune_copy"),
    ("conure", "method.tasks=[{name: t1, kind: nextitem}]", "method.tasks[0].kind", "nextitem",
     "next_item, item_rec, profile"),
    ("conure", "method.eval_split=train", "method.eval_split", "train", "valid, test"),
    ("stackrec", "model.arch=gru4rec", "model.arch", "gru4rec", "nextitnet, sasrec"),
    ("stackrec", "method.scenario=tl", "method.scenario", "tl", "ts, cl, tf"),
    ("stackrec", "method.stack_method=interleave", "method.stack_method", "interleave", "adjacent, cross"),
    ("stackrec", "method.fresh_parts=[norm]", "method.fresh_parts[0]", "norm", "layernorm, alpha, output"),
    ("msd", "method.knowledge.teacher.kind=openai", "method.knowledge.teacher.kind", "openai", "hf, metadata"),
    ("msd", "method.knowledge.teacher.dtype=fp16", "method.knowledge.teacher.dtype", "fp16",
     "auto, float32, bfloat16, float16"),
    ("msd", "method.knowledge.engine=spark", "method.knowledge.engine", "spark", "ray, local"),
    ("msd", "method.knowledge.levels=[item,shop]", "method.knowledge.levels[1]", "shop", "item, user"),
    ("msd", "method.student.kind=decoder", "method.student.kind", "decoder", "encoder, causal"),
    ("msd", "method.distill.mode=logits", "method.distill.mode", "logits", "feature, token"),
    ("msd", "method.report.ablations=[no_gates]", "method.report.ablations[0]", "no_gates",
     "no_lora, no_item_fusion, no_user_knowledge, no_semantics"),
]


def recipe_file(tmp_path, recipe, extra=""):
    return write(tmp_path / f"{recipe}.yaml", f"run:\n  recipe: {recipe}\n" + REQUIRED + extra)


@pytest.mark.parametrize("recipe,override,key,value,allowed", BAD_CHOICES, ids=[c[1] for c in BAD_CHOICES])
def test_bad_choice_fails_at_load_naming_file_key_and_choices(tmp_path, recipe, override, key, value, allowed):
    in_file = recipe_file(tmp_path / "file", recipe, OmegaConf.to_yaml(OmegaConf.from_dotlist([override])))
    with pytest.raises(ConfigError) as info:
        load_config(in_file)
    assert str(info.value) == f"config key '{key}' in {in_file}: '{value}' is not one of {allowed}"

    with pytest.raises(ConfigError) as info:
        load_config(recipe_file(tmp_path / "ok", recipe), [override])
    assert str(info.value) == f"config key '{key}' in command line ({override}): '{value}' is not one of {allowed}"


def test_choice_is_an_enum_member_that_compares_and_prints_as_its_value(tmp_path, minimal):
    cfg = load_config(minimal, ["model.arch=deepfm", "sharding.default_types=[row_wise]"])
    assert cfg.model.arch is CtrArch.deepfm
    assert cfg.model.arch == "deepfm" and f"{cfg.model.arch}" == "deepfm" and cfg.model.arch != "dcn"
    assert list(cfg.sharding.default_types) == ["row_wise"]
    plain = config_to_dict(cfg)  # what workers, records and the saved YAML get: plain strings
    assert type(plain["model"]["arch"]) is str and type(plain["sharding"]["default_types"][0]) is str
    assert type(OmegaConf.create(plain).model.arch) is str
    saved = save_resolved_config(cfg, str(tmp_path / "r"))
    assert "arch: deepfm" in open(saved).read()
    assert load_config(saved).model.arch is CtrArch.deepfm


def test_sharding_choices_are_torchrecs():
    from torchrec.distributed.embedding_types import EmbeddingComputeKernel
    from torchrec.distributed.types import ShardingType

    assert set(EmbeddingShardingType.values()) <= {t.value for t in ShardingType}
    assert set(ComputeKernel.values()) == {k.value for k in EmbeddingComputeKernel}


# --- files -------------------------------------------------------------------------------------


def test_defaults_cycle(tmp_path):
    write(tmp_path / "a.yaml", "defaults: [b.yaml]\n")
    write(tmp_path / "b.yaml", "defaults: [a.yaml]\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(tmp_path / "a.yaml"))


def test_missing_file(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(missing)


def test_missing_default_file(tmp_path):
    top = write(tmp_path / "top.yaml", "defaults: [gone.yaml]\n" + REQUIRED)
    with pytest.raises(ConfigError, match="gone.yaml"):
        load_config(top)


def test_invalid_yaml(tmp_path):
    path = write(tmp_path / "broken.yaml", "trainer: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(path)


# --- result and saving -------------------------------------------------------------------------


def test_struct_mode_rejects_typos(minimal):
    cfg = load_config(minimal)
    with pytest.raises(Exception):
        cfg.trainer.nonexistent
    with pytest.raises(Exception):
        cfg.trainer.nonexistent = 1


def test_save_and_reload_roundtrip(minimal, tmp_path):
    cfg = load_config(minimal, ["trainer.num_workers=3", "data.synth.rows=10", "run.name=rt"])
    out = save_resolved_config(cfg, str(tmp_path / "runs" / "rt"))
    assert out == str(tmp_path / "runs" / "rt" / "config.yaml")
    assert os.listdir(tmp_path / "runs" / "rt") == ["config.yaml"]  # no temp file left
    again = load_config(out)
    assert config_to_dict(again) == config_to_dict(cfg)


def test_redact_secrets():
    raw = {
        "s3": {"aws_secret_access_key": "abc", "AWS_ACCESS_KEY_ID": "id", "endpoint": "http://x"},
        "items": [{"Password": "p", "user": "u"}],
        "token": None,
    }
    red = redact_secrets(raw)
    assert red["s3"] == {"aws_secret_access_key": "***", "AWS_ACCESS_KEY_ID": "***", "endpoint": "http://x"}
    assert red["items"] == [{"Password": "***", "user": "u"}]
    assert raw["s3"]["aws_secret_access_key"] == "abc"  # input untouched


def test_saved_config_is_redacted(minimal, tmp_path):
    cfg = load_config(minimal, ["sharding.tables.t_secret_token.embedding_dim=4"])
    text = open(save_resolved_config(cfg, str(tmp_path / "r"))).read()
    assert "t_secret_token: '***'" in text


def test_broken_interpolation(minimal):
    with pytest.raises(ConfigError, match=r"run\.name.*run\.nam"):
        load_config(minimal, ["run.name=${run.nam}"])
