"""Typed config sections. A YAML config is merged onto these; any key not declared here is an error.

The ``model`` and ``method`` sections are typed per recipe (``run.recipe``): see
``recipe_sections``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


@dataclass
class RunConfig:
    recipe: str = "ctr"
    name: str = "run"
    output_dir: str = "runs"  # the run directory is <output_dir>/<name>; local path or s3://
    seed: int = 0
    resume: bool = False  # continue from the latest checkpoint in the run directory
    init_from: Optional[str] = None  # load model weights (only) from this checkpoint dir


@dataclass
class SynthConfig:
    """Generated data for smoke runs: written to data.train / data.valid when they are absent."""

    rows: int = 20000
    valid_rows: int = 4000
    rows_per_file: int = 5000
    rows_per_row_group: int = 1000
    num_sparse: int = 6
    num_dense: int = 4
    num_embeddings: int = 1000  # vocabulary of every sparse field
    multi_hot: int = 1  # how many of the sparse fields are list columns
    zipf_a: float = 1.2  # power-law exponent of id popularity
    num_users: int = 500  # group_key cardinality (for GAUC)
    seed: int = 0


@dataclass
class DataConfig:
    schema: str = MISSING  # feature schema YAML (local or s3://)
    train: str = MISSING  # Parquet file, directory or glob (local or s3://)
    valid: Optional[str] = None
    batch_size: int = 512  # per worker
    eval_batch_size: int = 2048  # per worker
    loader_workers: int = 0  # DataLoader processes per worker (0: read in the training process)
    shuffle: bool = True  # shuffle row-group order each epoch (seeded by run.seed + epoch)
    s3_endpoint_url: Optional[str] = None  # e.g. http://127.0.0.1:5000 for a local S3 server
    synth: Optional[SynthConfig] = None


@dataclass
class TableShardingConfig:
    # any of: table_wise, row_wise, column_wise, table_row_wise, table_column_wise, data_parallel
    sharding_types: List[str] = field(default_factory=list)
    compute_kernel: Optional[str] = None  # fused, dense, ... (TorchRec EmbeddingComputeKernel)
    embedding_dim: Optional[int] = None  # overrides model.embedding_dim for this table
    min_partition: Optional[int] = None  # smallest column-shard width the planner may choose (column_wise)


@dataclass
class ShardingConfig:
    default_types: List[str] = field(default_factory=list)  # empty: the planner chooses
    tables: Dict[str, TableShardingConfig] = field(default_factory=dict)
    hbm_gb: Optional[float] = None  # per-device memory the planner may use (None: device's)
    ddr_gb: Optional[float] = None


@dataclass
class EmbeddingOptimizerConfig:
    type: str = "exact_rowwise_adagrad"  # exact_rowwise_adagrad | exact_adagrad | exact_sgd | adam (GPU)
    lr: float = 0.05
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class DenseConfig:
    backend: str = "ddp"  # ddp | deepspeed
    optimizer: str = "adam"  # adam | adamw | sgd | adagrad
    lr: float = 1e-3
    weight_decay: float = 0.0
    zero_stage: int = 1  # DeepSpeed ZeRO stage 0-3
    precision: str = "fp32"  # fp32 | bf16 (DeepSpeed)
    grad_clip: float = 0.0  # 0: off


@dataclass
class CtrModelConfig:
    arch: str = "dcn"  # dcn (DCN-v2) | deepfm | dlrm
    embedding_dim: int = 16
    dense_arch: List[int] = field(default_factory=lambda: [64, 16])  # bottom MLP for dense fields
    over_arch: List[int] = field(default_factory=lambda: [128, 64])  # top MLP
    cross_layers: int = 2  # DCN-v2
    cross_low_rank: Optional[int] = None  # DCN-v2 low-rank cross (None: full rank)
    dropout: float = 0.0


@dataclass
class TrainerConfig:
    num_workers: int = 2
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    address: Optional[str] = None  # Ray address; None: RAY_ADDRESS, else an embedded local Ray on 127.0.0.1
    placement_strategy: str = "PACK"  # PACK | SPREAD | STRICT_PACK | STRICT_SPREAD (one worker per node)
    epochs: int = 1
    max_steps: int = -1  # stop after this many steps in total (-1: run all epochs)
    log_every: int = 20
    eval_every: int = 0  # steps; 0: evaluate at the end of each epoch
    checkpoint_every: int = 0  # steps; 0: checkpoint at the end of each epoch
    keep_checkpoints: int = 2
    max_failures: int = 0  # Ray Train FailureConfig: worker-group restarts before giving up
    nan_policy: str = "error"  # error | skip (skip the update of a step whose loss is NaN/inf)
    fail_at_step: int = -1  # fault drill: the last rank dies once at this step (-1: never)
    timeout_s: int = 3600  # a run that takes longer is stopped


@dataclass
class MetricsConfig:
    names: List[str] = field(default_factory=lambda: ["auc", "gauc", "logloss"])
    ks: List[int] = field(default_factory=lambda: [5, 10])  # for hr/mrr/ndcg
    tensorboard: bool = True
    mlflow_tracking_uri: Optional[str] = None  # e.g. http://mlflow:5000 or file:///path/mlruns; None: off
    mlflow_experiment: str = "distrec"


@dataclass
class DistrecConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None  # typed by the recipe: recipe_sections(run.recipe)["model"]
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    embedding_optimizer: EmbeddingOptimizerConfig = field(default_factory=EmbeddingOptimizerConfig)
    dense: DenseConfig = field(default_factory=DenseConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    method: Any = None  # method-specific settings, typed by recipe_sections(run.recipe)["method"]


@dataclass
class NoMethodConfig:
    """For recipes without method-specific settings: any key under ``method`` is an error."""


RECIPE_SECTIONS: Dict[str, Dict[str, type]] = {
    "ctr": {"model": CtrModelConfig, "method": NoMethodConfig},
}
KNOWN_RECIPES = ("ctr", "egean", "msd", "stackrec", "conure")


def recipe_sections(recipe: str) -> Dict[str, type]:
    """The typed ``model`` and ``method`` sections of ``recipe``.

    Recipes other than ``ctr`` declare them as ``ModelConfig`` (and optionally ``MethodConfig``)
    dataclasses in ``distrec/config/<recipe>.py``.
    """
    if recipe in RECIPE_SECTIONS:
        return RECIPE_SECTIONS[recipe]
    module_name = f"distrec.config.{recipe}"
    try:
        module = importlib.import_module(module_name) if recipe.isidentifier() else None
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        module = None
    if module is None or not hasattr(module, "ModelConfig"):
        from distrec.errors import ConfigError

        raise ConfigError(f"unknown recipe run.recipe={recipe!r}; known recipes: {', '.join(KNOWN_RECIPES)}")
    return {"model": module.ModelConfig, "method": getattr(module, "MethodConfig", NoMethodConfig)}
