"""Typed ``model`` and ``method`` sections of the StackRec recipe (``run.recipe: stackrec``).

Choices the paper and its code leave open are ours and marked (ours); each is an option here
with the default the spec gives (../shared/docs/methods.md, StackRec).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from distrec.config.schema import Choice, ranged


class SequenceArch(Choice):
    nextitnet = "nextitnet"
    sasrec = "sasrec"


class Scenario(Choice):
    ts = "ts"  # from scratch, growing
    cl = "cl"  # data grows
    tf = "tf"  # source -> target


class StackMethod(Choice):
    adjacent = "adjacent"  # new i <- old i // 2
    cross = "cross"  # new i <- old i mod L


class Variant(Choice):
    """What one ``distrec stackrec run`` / sweep trial trains (scenario.py)."""

    scratch = "scratch"  # the deepest stage's model from scratch
    adjacent = "adjacent"  # the stages, stacked adjacently
    cross = "cross"  # the stages, stacked crosswise


class FreshPart(Choice):
    """Parts that start fresh after stacking instead of being copied (stacking.py)."""

    layernorm = "layernorm"
    alpha = "alpha"
    output = "output"


@dataclass
class ModelConfig:
    arch: SequenceArch = SequenceArch.nextitnet
    blocks: int = ranged(8, min=1)  # residual blocks (a stage of a scenario overrides it)
    embedding_dim: int = ranged(64, min=1)  # channels of every block = width of the item embeddings
    kernel_size: int = ranged(3, min=1)  # NextItNet causal convolution width
    dilations: List[int] = ranged([1, 4], min=1)  # block i uses d = dilations[i % len]; its 2nd conv 2d
    heads: int = ranged(1, min=1)  # SASRec attention heads
    dropout: float = ranged(0.0, min=0, below=1)  # SASRec attention/FFN dropout
    sequence_field: str = "item_seq"  # the schema's sequence field (owns the item table)
    sample_fraction: float = ranged(0.2, above=0, max=1)  # sampled softmax: share of the catalogue drawn once per batch
    remove_accidental_hits: bool = True  # (ours) a sampled negative equal to a row's target is masked


@dataclass
class SyntheticSequencesConfig:
    """Long-range synthetic sequences (distrec/methods/stackrec/synthetic.py), written next to
    ``data.schema`` when that file is absent."""

    num_sequences: int = 20000
    length: int = 64  # items per sequence
    num_items: int = 5000  # catalogue size (ids 1..num_items-1; 0 is padding)
    long_lag: int = 48  # the long-range rule looks this many positions back
    p_long: float = 0.6
    p_short: float = 0.2
    seed: int = 0


@dataclass
class StageConfig:
    """One training stage of a scenario: a model depth, a step budget and its data."""

    blocks: int = 8
    max_steps: int = 1000  # step budget (early stopping may end the stage sooner)
    data_fraction: float = 1.0  # CL: share of the nested training chunks this stage sees
    train: Optional[str] = None  # TF: this stage's training data (default: data.train)
    valid: Optional[str] = None  # TF: this stage's validation data (default: data.valid)


@dataclass
class MethodConfig:
    scenario: Scenario = Scenario.ts
    variant: Variant = Variant.adjacent  # a trial of the report's sweep (sweep.grid."method.variant")
    stack_method: StackMethod = StackMethod.adjacent
    # Parts that start fresh after stacking (the authors' code: all three); [] copies everything.
    fresh_parts: List[FreshPart] = field(default_factory=lambda: list(FreshPart))
    stages: List[StageConfig] = field(default_factory=lambda: [StageConfig(blocks=8)])
    scratch_max_steps: int = 0  # budget of the deep from-scratch baseline (0: sum of the stages')
    cl_chunks: int = 5  # (ours) CL: training data is read as this many nested chunks (<= 10)
    synthetic: Optional[SyntheticSequencesConfig] = None
    report_dir: Optional[str] = None  # where `stackrec report` writes (default: the sweep's folder, beside results.md)
