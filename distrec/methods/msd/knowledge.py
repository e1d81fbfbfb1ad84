"""``distrec msd knowledge``: the teacher writes one knowledge text per item and per user.

A Ray Data batch job (``engine=ray``): the pending entities go through ``map_batches`` with a
callable class that holds the teacher (one per actor: the model loads once per replica, on a
GPU when ``gpus_per_replica`` > 0); the driver streams results into Parquet parts
``part-NNNNN-<uuid>.parquet`` with columns (level, id, text), each written atomically.
``engine=local`` runs the same callable in-process (tests, debugging).

Resumable: a rerun reads the (level, id) pairs already written and only sends the others, so
an interrupted job loses at most the part in flight and never writes an entity twice.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from distrec.errors import DataError
from distrec.methods.msd.entities import LEVELS, load_catalog
from distrec.storage import atomic_parquet_writer, filesystem, list_parquet_files

log = logging.getLogger("distrec")
KNOWLEDGE_SCHEMA = pa.schema([("level", pa.string()), ("id", pa.int64()), ("text", pa.string())])


class TeacherBatchFn:
    """Ray Data callable class: a batch of entities (level, id, fields_json) -> (level, id, text)."""

    def __init__(self, teacher_cfg: dict, prompt_files: dict) -> None:
        from omegaconf import OmegaConf

        from distrec.methods.msd.prompts import load_prompts

        teacher_cfg = OmegaConf.create(teacher_cfg)
        self.prompts = load_prompts(OmegaConf.create(prompt_files))
        self.teacher = build_teacher(teacher_cfg)

    def __call__(self, batch: dict) -> dict:
        levels = [str(x) for x in batch["level"]]
        ids = [int(x) for x in batch["id"]]
        fields = [json.loads(x) for x in batch["fields_json"]]
        texts = [""] * len(ids)
        for level in LEVELS:  # a batch may mix levels: one teacher call per level
            rows = [i for i, lv in enumerate(levels) if lv == level]
            if not rows:
                continue
            prompt = self.prompts[level]
            out = self.teacher.generate(level, [fields[i] for i in rows],
                                        [prompt.render(fields[i]) for i in rows], prompt.system,
                                        [prompt.prefix(fields[i]) for i in rows])
            for i, text in zip(rows, out):
                texts[i] = text
        return {"level": levels, "id": ids, "text": texts}


def build_teacher(teacher_cfg):
    if teacher_cfg.kind == "metadata":
        from distrec.methods.msd.metadata_teacher import MetadataTeacher

        return MetadataTeacher()
    from distrec.methods.msd.hf_teacher import HFTeacher

    return HFTeacher(teacher_cfg)


def read_knowledge(path: str) -> pa.Table:
    """Every record written so far (an empty table when nothing is)."""
    files = list_parquet_files(path) if filesystem(path)[0].exists(path) else []
    if not files:
        return KNOWLEDGE_SCHEMA.empty_table()
    tables = []
    for f in files:
        table = pq.read_table(f)
        if table.schema.names != KNOWLEDGE_SCHEMA.names:
            raise DataError(f"{f}: knowledge part has columns {table.schema.names}; expected "
                            f"{KNOWLEDGE_SCHEMA.names}")
        tables.append(table.cast(KNOWLEDGE_SCHEMA))
    return pa.concat_tables(tables)


def knowledge_texts(path: str) -> dict[tuple[str, int], str]:
    table = read_knowledge(path)
    return {(lv, i): t for lv, i, t in zip(table.column("level").to_pylist(), table.column("id").to_pylist(),
                                           table.column("text").to_pylist())}


def pending_entities(cfg) -> tuple[list[dict], int]:
    """(entities without knowledge yet, how many already have it) for the configured levels."""
    kcfg = cfg.method.knowledge
    catalog = load_catalog(cfg.method.entities, cfg.data.train)
    done = set(knowledge_texts(kcfg.output))
    rows, skipped = [], 0
    for level in map(str, kcfg.levels):
        ids = sorted(catalog.level(level))
        if kcfg.limit is not None:
            ids = ids[:kcfg.limit]
        for i in ids:
            if (level, i) in done:
                skipped += 1
                continue
            rows.append({"level": level, "id": i, "fields_json": json.dumps(catalog.level(level)[i].fields)})
    return rows, skipped


class _PartWriter:
    """Writes result batches as atomic Parquet parts and logs entities/s and the ETA."""

    def __init__(self, out: str, total: int) -> None:
        self.out = out
        self.fs, _ = filesystem(out)
        self.total = total
        self.done = 0
        self.start = time.perf_counter()

    def write(self, batch: dict) -> None:
        table = pa.table({k: batch[k] for k in KNOWLEDGE_SCHEMA.names}, schema=KNOWLEDGE_SCHEMA)
        path = posixpath.join(self.out, f"part-{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}.parquet")
        with atomic_parquet_writer(path, KNOWLEDGE_SCHEMA, self.fs) as writer:
            writer.write_table(table)
        self.done += table.num_rows
        elapsed = time.perf_counter() - self.start
        rate = self.done / max(elapsed, 1e-9)
        eta = (self.total - self.done) / max(rate, 1e-9)
        log.info("knowledge: %d/%d entities, %.2f entities/s, ETA %.0f s", self.done, self.total, rate, eta)


def run_knowledge_job(cfg) -> dict:
    """Generate the missing knowledge records; returns counts and throughput."""
    kcfg = cfg.method.knowledge
    rows, skipped = pending_entities(cfg)
    log.info("knowledge: %d entities to generate, %d already written in %s", len(rows), skipped, kcfg.output)
    writer = _PartWriter(kcfg.output, len(rows))
    if rows:
        fn_args = ({**_plain(kcfg.teacher)}, {**_plain(kcfg.prompts)})
        if kcfg.engine == "local":
            fn = TeacherBatchFn(*fn_args)
            for start in range(0, len(rows), kcfg.part_size):
                chunk = rows[start:start + kcfg.part_size]
                writer.write(fn({k: [r[k] for r in chunk] for k in chunk[0]}))
        else:
            _run_on_ray(cfg, rows, fn_args, writer)
    elapsed = time.perf_counter() - writer.start
    return {"written": writer.done, "skipped": skipped, "seconds": round(elapsed, 2),
            "entities_per_s": round(writer.done / max(elapsed, 1e-9), 3)}


def _run_on_ray(cfg, rows: list[dict], fn_args: tuple, writer: _PartWriter) -> None:
    import ray

    from distrec.train.launcher import ensure_ray

    kcfg = cfg.method.knowledge
    ensure_ray(cfg.trainer.address, kcfg.concurrency * kcfg.cpus_per_replica, kcfg.gpus_per_replica > 0)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // max(kcfg.teacher.batch_size, 1), 64)))
    ds = ds.map_batches(
        TeacherBatchFn, fn_constructor_args=fn_args, batch_size=kcfg.teacher.batch_size,
        batch_format="numpy", concurrency=kcfg.concurrency, num_cpus=kcfg.cpus_per_replica,
        num_gpus=kcfg.gpus_per_replica or None,
    )
    for batch in ds.iter_batches(batch_size=kcfg.part_size, batch_format="numpy"):
        writer.write({k: [x.item() if hasattr(x, "item") else x for x in batch[k]] for k in KNOWLEDGE_SCHEMA.names})


def _plain(section) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(section, resolve=True, enum_to_str=True)
