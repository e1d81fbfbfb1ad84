"""Conure's task list (from the config and each task's ``task.yaml``) and the run's registry of
learned tasks (``<run_dir>/conure_state.json``): which tasks the checkpoint holds, where each
stage's checkpoint is, and the metrics of every learned task after every stage."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq
import torch

from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError, DataError
from distrec.methods.conure.config import TaskKind
from distrec.methods.conure.importers.common import (
    LABEL_COLUMN,
    TASK_FILE,
    read_task_file,
)
from distrec.methods.conure.model import TaskSpec
from distrec.storage import (
    arrow_filesystem,
    filesystem,
    list_parquet_files,
    write_text_atomic,
)

STATE_FILE = "conure_state.json"


@dataclass(frozen=True)
class ResolvedTask:
    spec: TaskSpec
    data: str
    schema: FeatureSchema
    prune_ratio: float
    train_epochs: int
    retrain_epochs: int
    lr: float | None = None  # None: dense.lr
    batch_size: int | None = None  # None: data.batch_size

    @property
    def name(self) -> str:
        return self.spec.name

    def split(self, name: str) -> str:
        return posixpath.join(self.data, name)


def resolve_tasks(cfg) -> list[ResolvedTask]:
    """Every configured task with its kind, output count and schema; checks they fit together."""
    method = cfg.method
    if not method.tasks:
        raise ConfigError("method.tasks is empty: list the tasks to learn, e.g. "
                          "[{name: t1, data: runs/data/conure-ml100k/t1_next_item}]")
    if not 0.0 < method.prune_ratio < 1.0:
        raise ConfigError(f"method.prune_ratio: expected a share in (0, 1), got {method.prune_ratio}")
    tasks: list[ResolvedTask] = []
    names = set()
    for i, t in enumerate(method.tasks):
        where = f"method.tasks[{i}] ({t.name})"
        if t.name in names or not t.name.isidentifier():
            raise ConfigError(f"{where}: task names must be unique identifiers, got {t.name!r}")
        names.add(t.name)
        data = task_data_path(method, t)
        info = read_task_file(data)
        kind = str(t.kind) if t.kind else info.get("kind")  # the config's was checked at load
        if kind not in TaskKind.values():
            raise ConfigError(f"{where}: kind must be one of {TaskKind.values()} (in the config or "
                              f"{t.data}/{TASK_FILE}), got {kind!r}")
        schema = FeatureSchema.load(posixpath.join(data, "schema.yaml"), cfg.data.s3_endpoint_url)
        num_outputs = t.num_outputs or info.get("num_outputs")
        if kind == "next_item":
            num_outputs = _item_field(schema, where).num_embeddings
        if not isinstance(num_outputs, int) or num_outputs < 2:
            raise ConfigError(f"{where}: num_outputs (targets or classes) must be an int >= 2, "
                              f"from the config or {t.data}/{TASK_FILE}; got {num_outputs!r}")
        _check_schema(schema, kind, where)
        ratio = t.prune_ratio if t.prune_ratio is not None else method.prune_ratio
        tasks.append(ResolvedTask(
            TaskSpec(t.name, kind, num_outputs), data, schema, ratio,
            t.train_epochs if t.train_epochs is not None else method.train_epochs,
            t.retrain_epochs if t.retrain_epochs is not None else method.retrain_epochs,
            _positive(t.lr, f"{where}: lr"), _positive(t.batch_size, f"{where}: batch_size"),
        ))
    if tasks[0].spec.kind != "next_item" and method.strategy == "conure":
        raise ConfigError("method.tasks[0]: Conure's T1 trains the item embeddings, so it must be a "
                          f"next_item task, got {tasks[0].spec.kind!r}")
    first = _item_field(tasks[0].schema, "method.tasks[0]")
    for t in tasks[1:]:
        other = _item_field(t.schema, t.name)
        if (other.name, other.num_embeddings, other.max_len) != (first.name, first.num_embeddings, first.max_len):
            raise DataError(
                f"task {t.name}: item sequence field {other} in {t.schema.source} differs from "
                f"T1's {first} in {tasks[0].schema.source}; every task must share the backbone's "
                "item vocabulary and max_len"
            )
    return tasks


def _positive(value, key: str):
    if value is not None and not value > 0:
        raise ConfigError(f"{key}: expected a positive number or null, got {value!r}")
    return value


def task_config(cfg, task: ResolvedTask):
    """``cfg`` with the task's own dense.lr and data.batch_size, where it sets them."""
    if task.lr is None and task.batch_size is None:
        return cfg
    out = cfg.copy()
    if task.lr is not None:
        out.dense.lr = task.lr
    if task.batch_size is not None:
        out.data.batch_size = task.batch_size
    return out


def target_counts(task: ResolvedTask, s3_endpoint_url: str | None = None, split: str = "train") -> torch.Tensor:
    """How often each target id (item_rec) or class (profile) occurs in a split of the task, read
    column-wise a row group at a time: the popularity that ranks the BPR negative sampler's ids,
    and the class shares behind the report's majority-class control."""
    column = LABEL_COLUMN[task.spec.kind]
    counts = np.zeros(task.spec.num_outputs, dtype=np.int64)
    for file in list_parquet_files(task.split(split), s3_endpoint_url):
        fs, path = arrow_filesystem(file, s3_endpoint_url)
        parquet = pq.ParquetFile(path, filesystem=fs)
        for group in range(parquet.num_row_groups):
            ids = parquet.read_row_group(group, columns=[column]).column(0).to_numpy()
            if ids.size and (ids.min() < 0 or ids.max() >= counts.size):
                raise DataError(f"{file}: row group {group}, column {column!r}: target ids must be in "
                                f"[0, {counts.size}) (task {task.name}'s num_outputs), got "
                                f"{int(ids.min())}..{int(ids.max())}")
            counts += np.bincount(ids, minlength=counts.size)
    return torch.from_numpy(counts)


def task_data_path(method, task) -> str:
    if method.data_root and "://" not in task.data and not task.data.startswith("/"):
        return posixpath.join(method.data_root, task.data)
    return task.data


def _item_field(schema: FeatureSchema, where: str):
    if schema.sparse or len(schema.sequence) != 1 or not schema.sequence[0].owns_table:
        raise DataError(f"{where}: feature schema {schema.source} must have exactly one sequence field "
                        "owning its table (the item sequence) and no sparse fields")
    return schema.sequence[0]


def _check_schema(schema: FeatureSchema, kind: str, where: str) -> None:
    label = LABEL_COLUMN[kind]
    expected = (label,) if label else ()
    if tuple(schema.labels) != expected:
        raise DataError(f"{where}: a {kind} task's schema {schema.source} needs labels {list(expected)}, "
                        f"got {list(schema.labels)}")


# --- the run's registry ------------------------------------------------------------------------


@dataclass
class ConureState:
    strategy: str
    tasks: list[dict] = field(default_factory=list)  # learned, in order: name, kind, checkpoint, masks
    history: list[dict] = field(default_factory=list)  # per stage: task, metrics of every task
    params: dict = field(default_factory=dict)

    @property
    def learned(self) -> list[str]:
        return [t["name"] for t in self.tasks]

    def checkpoint_of(self, name: str) -> str:
        for t in self.tasks:
            if t["name"] == name:
                return t["checkpoint"]
        raise ConfigError(f"task {name!r} has not been learned in this run (learned: {self.learned})")

    def latest_metrics(self) -> dict:
        return self.history[-1]["metrics"] if self.history else {}

    @classmethod
    def load(cls, run_dir: str, strategy: str) -> "ConureState":
        strategy = str(strategy)  # a config's Strategy member, kept as the plain name
        path = posixpath.join(run_dir, STATE_FILE)
        fs, p = filesystem(path)
        if not fs.exists(p):
            return cls(strategy)
        raw = json.loads(fs.cat_file(p))
        if raw["strategy"] != strategy:
            raise ConfigError(f"{path} was written by strategy {raw['strategy']!r}, this config runs "
                              f"{strategy!r}: use another run.name")
        return cls(raw["strategy"], raw["tasks"], raw["history"], raw.get("params", {}))

    def save(self, run_dir: str) -> None:
        fs, p = filesystem(run_dir)
        fs.makedirs(p, exist_ok=True)
        text = json.dumps({"strategy": self.strategy, "tasks": self.tasks, "history": self.history,
                           "params": self.params}, indent=1)
        write_text_atomic(posixpath.join(p, STATE_FILE), text, fs)

    def check_prefix(self, tasks: list[ResolvedTask]) -> None:
        """The learned tasks must be the first tasks of the config, in order and of the same kind."""
        for i, learned in enumerate(self.tasks):
            if i >= len(tasks) or (tasks[i].name, tasks[i].spec.kind) != (learned["name"], learned["kind"]):
                configured = [(t.name, t.spec.kind) for t in tasks]
                raise ConfigError(
                    f"the run already learned {[(t['name'], t['kind']) for t in self.tasks]}; "
                    f"method.tasks must start with them in order, got {configured}"
                )


def prepare_tasks(cfg) -> None:
    """Build the task datasets with ``method.prepare`` when T1's schema is missing, then check
    every task's files and kinds (on the driver, before any worker starts)."""
    method = cfg.method
    if method.prepare is not None and method.tasks and not _t1_imported(method):
        _import_tasks(method)
    resolve_tasks(cfg)


def _t1_imported(method) -> bool:
    fs, p = filesystem(posixpath.join(task_data_path(method, method.tasks[0]), "schema.yaml"))
    return fs.exists(p)


def _import_tasks(method) -> None:
    from omegaconf import OmegaConf

    from distrec.methods import importers

    prepare, known = method.prepare, importers()
    if not method.data_root:
        raise ConfigError("method.prepare needs method.data_root (where the task datasets go)")
    if prepare.importer not in known:
        raise ConfigError(f"method.prepare.importer: unknown {prepare.importer!r}; known: {sorted(known)}")
    options = OmegaConf.to_container(prepare.options) if prepare.get("options") else {}
    known[prepare.importer](prepare.src, method.data_root, max_len=prepare.max_len, overwrite=True, **options)
