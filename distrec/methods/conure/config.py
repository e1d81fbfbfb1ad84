"""Typed ``model`` and ``method`` sections of the Conure recipe (``run.recipe: conure``).

Choices marked (ours) are not settled by the paper or its code; each is a named option here with
the default the spec gives (../shared/docs/methods.md, "Conure").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from distrec.config.schema import Choice


class TaskKind(Choice):
    next_item = "next_item"
    item_rec = "item_rec"
    profile = "profile"


class Strategy(Choice):
    conure = "conure"  # masks (train → prune → retrain)
    finetune_all = "finetune_all"  # one backbone, everything retrained on each new task (forgets)
    separate = "separate"  # a fresh backbone per task, trained alone from scratch (N× parameters)
    finetune_copy = "finetune_copy"  # one model per task: a copy of T1's model, everything fine-tuned


def one_model_per_task(strategy) -> bool:
    return str(strategy) in (Strategy.separate.value, Strategy.finetune_copy.value)


class NegativeSampler(Choice):
    exponential_rank = "exponential_rank"  # the authors': P(rank r) ∝ exp(-(r + 1) / (ρN))
    log_uniform_rank = "log_uniform_rank"  # P(r) ∝ log((r + 2) / (r + 1))
    uniform = "uniform"


class EvalSplit(Choice):
    valid = "valid"
    test = "test"


@dataclass
class ModelConfig:
    """Pre-activation NextItNet backbone (code): 8 blocks of 256 channels, each block
    LN → ReLU → conv(d) → LN → ReLU → conv(2d) + x, block dilations ``[1, 4]`` repeated."""

    channels: int = 256  # also the item embedding width
    blocks: int = 8
    block_dilations: List[int] = field(default_factory=lambda: [1, 4])
    kernel_size: int = 3
    layer_norm_eps: float = 1e-5


@dataclass
class TaskConfig:
    """One task of the sequence T1, T2, ... (learned in list order).

    ``data`` is a directory (relative to ``method.data_root`` unless absolute) written by a Conure importer: ``schema.yaml``, ``train/``,
    ``valid/``, ``test/`` and ``task.yaml`` (kind and output count)."""

    name: str = "?"
    kind: Optional[TaskKind] = None  # None: from <data>/task.yaml
    data: str = "?"
    num_outputs: Optional[int] = None  # targets or classes (None: from <data>/task.yaml)
    prune_ratio: Optional[float] = None  # overrides method.prune_ratio for this task
    train_epochs: Optional[int] = None  # overrides method.train_epochs
    retrain_epochs: Optional[int] = None  # overrides method.retrain_epochs
    lr: Optional[float] = None  # overrides dense.lr for this task (the authors: 1e-4 from T2)
    batch_size: Optional[int] = None  # overrides data.batch_size for this task (the authors: 512 from T2)


@dataclass
class PrepareConfig:
    """Build the task datasets in ``method.data_root`` before a run when T1's is missing."""

    importer: str = "conure_recbole"  # a key of distrec.data.importers.IMPORTERS
    src: str = "?"
    max_len: int = 50
    options: Dict[str, Any] = field(default_factory=dict)  # more importer keywords, e.g. profiles


@dataclass
class MethodConfig:
    tasks: List[TaskConfig] = field(default_factory=list)
    data_root: Optional[str] = None  # relative task ``data`` paths are under it
    strategy: Strategy = Strategy.conure
    prune_ratio: float = 0.7  # share of the FREE weights of each conv layer pruned per task (spec)
    train_epochs: int = 2  # epochs of phase (a) per task
    retrain_epochs: int = 1  # epochs of phase (c) per task
    max_steps_per_phase: int = -1  # cap on steps of each phase (-1: the epochs decide)
    sampled_share: float = 0.2  # next-item sampled softmax: share of items sampled per batch (ours)
    bpr_negatives: int = 1  # negatives per positive for item-rec BPR (ours)
    negative_sampler: NegativeSampler = NegativeSampler.exponential_rank  # BPR negatives by training popularity
    sampler_rho: float = 0.3  # ρ of exponential_rank (ours: the authors' value is not in the paper)
    target_l2: float = 0.0  # L2 on the item-rec target rows a batch looks up (the authors': 1e-4 ~ 1e-3)
    t1_retrain_trains_shared: bool = True  # False: T1's retrain phase freezes embeddings and LayerNorms
    eval_split: EvalSplit = EvalSplit.valid  # split the per-stage metrics are computed on
    probe_rows: int = 32  # rows of fixed probe input whose outputs are recorded per stage
    prepare: Optional[PrepareConfig] = None
