"""Typed config sections. A YAML config is merged onto these; any key not declared here is an error.

The ``model`` and ``method`` sections are typed per recipe (``run.recipe``): each method declares
them in ``distrec/methods/<name>/config.py`` (see ``distrec.methods.Recipe``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

RANGE = "range"  # field metadata key: the Range a numeric value must lie in


@dataclass(frozen=True)
class Range:
    """Where a numeric config value must lie; checked at load, before Ray or any worker starts,
    so ``data.batch_size: 0`` is an error naming its file instead of a TorchRec failure later."""

    min: float | None = None  # inclusive
    above: float | None = None  # exclusive lower bound
    max: float | None = None  # inclusive
    below: float | None = None  # exclusive upper bound

    def contains(self, value: float) -> bool:
        return ((self.min is None or value >= self.min) and (self.above is None or value > self.above)
                and (self.max is None or value <= self.max) and (self.below is None or value < self.below))

    def __str__(self) -> str:
        bounds = ((">=", self.min), (">", self.above), ("<=", self.max), ("<", self.below))
        return " and ".join(f"{op} {bound:g}" for op, bound in bounds if bound is not None)


def ranged(default: Any, **bounds: float) -> Any:
    """A field whose value must lie in ``Range(**bounds)``, e.g. ``ranged(512, min=1)``;
    for a list field (``default`` a list) every item must."""
    if isinstance(default, list):
        items = list(default)
        return field(default_factory=lambda: list(items), metadata={RANGE: Range(**bounds)})
    return field(default=default, metadata={RANGE: Range(**bounds)})


class Choice(str, enum.Enum):
    """Base of every closed set of config values; OmegaConf rejects any other value at load.

    Member names equal the values, so a YAML file says ``arch: dcn`` and ``cfg.model.arch == "dcn"``
    holds (OmegaConf returns the member, which is a ``str``). ``str()`` and f-strings give the bare
    value (a plain ``(str, Enum)`` gives ``CtrArch.dcn``), so paths, logs and overrides built from
    a member read the same as from the string; ``config_to_dict`` turns members into strings."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)


@dataclass
class RunConfig:
    recipe: str = "ctr"
    name: str = "run"
    output_dir: str = "runs"  # the run directory is <output_dir>/<name>; local path or s3://
    seed: int = ranged(0, min=0)
    resume: bool = False  # continue from the latest checkpoint in the run directory
    init_from: Optional[str] = None  # load model weights (only) from this checkpoint dir


@dataclass
class SynthConfig:
    """Generated data for smoke runs: written to data.train / data.valid / data.test when absent."""

    rows: int = ranged(20000, min=1)
    valid_rows: int = ranged(4000, min=1)
    test_rows: int = ranged(4000, min=1)
    rows_per_file: int = ranged(5000, min=1)
    rows_per_row_group: int = ranged(1000, min=1)
    num_sparse: int = ranged(6, min=1)
    num_dense: int = ranged(4, min=0)
    num_embeddings: int = ranged(1000, min=1)  # vocabulary of every sparse field
    multi_hot: int = ranged(1, min=0)  # how many of the sparse fields are list columns
    zipf_a: float = ranged(1.2, above=0)  # power-law exponent of id popularity
    num_users: int = ranged(500, min=1)  # group_key cardinality (for GAUC)
    seed: int = ranged(0, min=0)


class OnBadRows(Choice):
    """What the reader does with a row holding a bad value (a null, NaN or out-of-range id, a
    binary label outside [0, 1])."""

    error = "error"  # stop with a DataError naming the file, row group, row, column and value
    skip = "skip"  # drop the row; each file's count is logged with its first bad row


@dataclass
class DataConfig:
    schema: str = MISSING  # feature schema YAML (local or s3://)
    train: str = MISSING  # Parquet file, directory or glob (local or s3://)
    valid: Optional[str] = None  # early stopping / best-checkpoint selection
    test: Optional[str] = None  # scored once with the best (else the last) weights after training
    batch_size: int = ranged(512, min=1)  # per worker
    eval_batch_size: int = ranged(2048, min=1)  # per worker
    loader_workers: int = ranged(0, min=0)  # DataLoader processes per worker (0: read in the training process)
    shuffle: bool = True  # shuffle row-group order each epoch (seeded by run.seed + epoch)
    s3_endpoint_url: Optional[str] = None  # e.g. http://127.0.0.1:5000 for a local S3 server
    on_bad_rows: OnBadRows = OnBadRows.error
    synth: Optional[SynthConfig] = None


class EmbeddingShardingType(Choice):
    """TorchRec's sharding types our sharders offer on every device (not grid_shard)."""

    table_wise = "table_wise"
    row_wise = "row_wise"
    column_wise = "column_wise"
    table_row_wise = "table_row_wise"
    table_column_wise = "table_column_wise"
    data_parallel = "data_parallel"


class ComputeKernel(Choice):
    """TorchRec's EmbeddingComputeKernel values (tests/engine/test_config.py keeps them in step)."""

    dense = "dense"
    fused = "fused"
    fused_uvm = "fused_uvm"
    fused_uvm_caching = "fused_uvm_caching"
    quant = "quant"
    quant_uvm = "quant_uvm"
    quant_uvm_caching = "quant_uvm_caching"
    key_value = "key_value"
    customized_kernel = "customized_kernel"
    ssd_virtual_table = "ssd_virtual_table"
    dram_virtual_table = "dram_virtual_table"
    dram_ssd_virtual_table = "dram_ssd_virtual_table"
    fused_triton = "fused_triton"


@dataclass
class TableShardingConfig:
    sharding_types: List[EmbeddingShardingType] = field(default_factory=list)  # empty: sharding.default_types
    compute_kernel: Optional[ComputeKernel] = None  # None: the planner chooses
    embedding_dim: Optional[int] = ranged(None, min=1)  # overrides model.embedding_dim for this table
    min_partition: Optional[int] = ranged(None, min=1)  # smallest column-shard width the planner may choose (column_wise)


@dataclass
class ShardingConfig:
    default_types: List[EmbeddingShardingType] = field(default_factory=list)  # empty: the planner chooses
    tables: Dict[str, TableShardingConfig] = field(default_factory=dict)
    hbm_gb: Optional[float] = ranged(None, above=0)  # per-device memory the planner may use (None: device's)
    ddr_gb: Optional[float] = ranged(None, above=0)


class FusedOptimizer(Choice):
    exact_rowwise_adagrad = "exact_rowwise_adagrad"
    exact_adagrad = "exact_adagrad"
    exact_sgd = "exact_sgd"
    adam = "adam"  # GPU only: fbgemm refuses Adam in CPU mode


@dataclass
class EmbeddingOptimizerConfig:
    type: FusedOptimizer = FusedOptimizer.exact_rowwise_adagrad
    lr: float = ranged(0.05, min=0)
    eps: float = ranged(1e-8, min=0)
    weight_decay: float = ranged(0.0, min=0)


class DenseBackend(Choice):
    ddp = "ddp"
    deepspeed = "deepspeed"


class DenseOptimizer(Choice):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"
    adagrad = "adagrad"


class Precision(Choice):
    fp32 = "fp32"
    bf16 = "bf16"  # DeepSpeed only


@dataclass
class DenseConfig:
    backend: DenseBackend = DenseBackend.ddp
    optimizer: DenseOptimizer = DenseOptimizer.adam
    lr: float = ranged(1e-3, min=0)
    weight_decay: float = ranged(0.0, min=0)
    zero_stage: int = ranged(1, min=0, max=3)  # DeepSpeed ZeRO stage 0-3
    precision: Precision = Precision.fp32
    grad_clip: float = ranged(0.0, min=0)  # 0: off


class CtrArch(Choice):
    dcn = "dcn"  # DCN-v2
    deepfm = "deepfm"
    dlrm = "dlrm"


@dataclass
class CtrModelConfig:
    """The CTR tower (distrec/models/ctr.py): the ctr recipe's model, reused by MSD."""

    arch: CtrArch = CtrArch.dcn
    embedding_dim: int = ranged(16, min=1)
    dense_arch: List[int] = ranged([64, 16], min=1)  # bottom MLP for dense fields
    over_arch: List[int] = ranged([128, 64], min=1)  # top MLP
    cross_layers: int = ranged(2, min=0)  # DCN-v2
    cross_low_rank: Optional[int] = ranged(None, min=1)  # DCN-v2 low-rank cross (None: full rank)
    dropout: float = ranged(0.0, min=0, below=1)


class EarlyStoppingMode(Choice):
    max = "max"  # a larger metric is better (auc)
    min = "min"  # a smaller metric is better (logloss)


@dataclass
class EarlyStoppingConfig:
    """Best-checkpoint selection on a validation metric, and stopping when it stops improving."""

    metric: Optional[str] = None  # e.g. auc, logloss, mrr@5; None: keep the last weights, never stop early
    mode: EarlyStoppingMode = EarlyStoppingMode.max
    patience: int = ranged(0, min=0)  # evaluations without a better metric before training stops; 0: never stop


class PlacementStrategy(Choice):
    """Ray placement group strategies (STRICT_SPREAD: one worker per node)."""

    PACK = "PACK"
    SPREAD = "SPREAD"
    STRICT_PACK = "STRICT_PACK"
    STRICT_SPREAD = "STRICT_SPREAD"


class NanPolicy(Choice):
    error = "error"
    skip = "skip"  # skip the update of a step whose loss is NaN/inf


@dataclass
class TrainerConfig:
    num_workers: int = ranged(2, min=1)
    cpus_per_worker: float = ranged(1.0, above=0)
    use_gpu: bool = False
    address: Optional[str] = None  # Ray address; None: RAY_ADDRESS, else an embedded local Ray on 127.0.0.1
    placement_strategy: PlacementStrategy = PlacementStrategy.PACK
    epochs: int = ranged(1, min=1)
    max_steps: int = ranged(-1, min=-1)  # stop after this many steps in total (-1: run all epochs)
    log_every: int = ranged(20, min=1)
    eval_every: int = ranged(0, min=0)  # steps between validation evaluations; 0: none between epoch ends
    eval_at_epoch_end: bool = True  # also evaluate when an epoch ends
    checkpoint_every: int = ranged(0, min=0)  # steps; 0: checkpoint with every evaluation (at epoch ends without data.valid)
    early_stopping: EarlyStoppingConfig = field(default_factory=lambda: EarlyStoppingConfig())
    keep_checkpoints: int = ranged(2, min=1)
    max_failures: int = ranged(0, min=-1)  # Ray Train FailureConfig: worker-group restarts before giving up
    nan_policy: NanPolicy = NanPolicy.error
    fail_at_step: int = ranged(-1, min=-1)  # fault drill: the last rank dies once at this step (-1: never)
    timeout_s: int = ranged(3600, min=1)  # a run that takes longer is stopped
    # a run whose workers the cluster cannot place within this time fails, naming what it asked for
    # (time a sweep's trial waits for other trials' workers counts too)
    startup_timeout_s: float = ranged(600.0, above=0)


class MetricName(Choice):
    auc = "auc"
    gauc = "gauc"
    logloss = "logloss"
    # ranking recipes (stackrec, conure) report these at every k of metrics.ks whatever names says
    hr = "hr"
    mrr = "mrr"
    ndcg = "ndcg"


@dataclass
class MetricsConfig:
    names: List[MetricName] = field(default_factory=lambda: [MetricName.auc, MetricName.gauc, MetricName.logloss])
    ks: List[int] = ranged([5, 10], min=1)  # for hr/mrr/ndcg
    tensorboard: bool = True
    mlflow_tracking_uri: Optional[str] = None  # e.g. http://mlflow:5000 or file:///path/mlruns; None: off
    mlflow_experiment: str = "distrec"


@dataclass
class SweepConfig:
    """``distrec sweep``: trials = (grid points x random points) x seeds; ``distrec run`` ignores it.

    Keys of ``grid``/``random``/``baseline`` are dotted config keys (``dense.lr``); on the command
    line ``sweep.grid.dense.lr=[0.001,0.01]``."""

    name: str = "sweep"  # the sweep's folder: <run.output_dir>/<name>
    grid: Dict[str, List[Any]] = field(default_factory=dict)  # key -> values; the cartesian product
    random: Dict[str, List[Any]] = field(default_factory=dict)  # key -> values; one drawn per point
    num_samples: int = ranged(1, min=1)  # random points (distinct), each crossed with every grid point
    random_seed: int = ranged(0, min=0)  # seeds the draw of the random points
    seeds: List[int] = ranged([], min=0)  # each point runs once per seed (run.seed); []: run.seed
    metric: str = "auc"  # plotted, compared with the baseline, and ASHA's objective
    mode: EarlyStoppingMode = EarlyStoppingMode.max
    baseline: Dict[str, Any] = field(default_factory=dict)  # key -> value of the reference point; {}: the first
    max_concurrent: int = ranged(2, min=1)  # trials at a time
    max_failures: int = ranged(0, min=-1)  # Tune retries of a failed trial (each Ray Train run has trainer.max_failures)
    asha: bool = False  # ASHA early stopping over the metric of each evaluation (needs trainer.max_steps)
    asha_grace_steps: int = ranged(1, min=1)  # no trial is stopped before this step
    asha_reduction_factor: float = ranged(2.0, above=1)
    poll_s: float = ranged(2.0, above=0)  # how often a trial reads its metrics.jsonl to report evaluations to Tune


@dataclass
class EvaluationConfig:
    """``distrec eval``: which saved weights are scored on which split (set by its options)."""

    checkpoint: Optional[str] = None  # a checkpoint directory (the command also accepts a run directory)
    split: str = "test"  # test | valid (data.test / data.valid) or a Parquet path


@dataclass
class DistrecConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None  # typed by the recipe (distrec/methods/<recipe>/config.py)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    embedding_optimizer: EmbeddingOptimizerConfig = field(default_factory=EmbeddingOptimizerConfig)
    dense: DenseConfig = field(default_factory=DenseConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    method: Any = None  # method-specific settings, typed by the recipe
    sweep: SweepConfig = field(default_factory=SweepConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


@dataclass
class NoMethodConfig:
    """For recipes without method-specific settings: any key under ``method`` is an error."""
