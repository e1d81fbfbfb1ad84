"""Make the MSD inputs exist: import a RecBole dataset (optionally a slice of its users)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from distrec.errors import ConfigError
from distrec.storage import filesystem

log = logging.getLogger("distrec")


def write_user_slice(src_dir: str, dst_dir: str, max_users: int) -> str:
    """Copy the RecBole atomic files of ``src_dir`` keeping the first ``max_users`` users (of the
    ``.user`` file, or of the ``.inter`` file when there is none) and their interactions; items
    are kept whole. Returns the new directory."""
    name = os.path.basename(os.path.normpath(src_dir))
    out = os.path.join(dst_dir, name)
    os.makedirs(out, exist_ok=True)
    user_file = os.path.join(src_dir, f"{name}.user")
    if os.path.exists(user_file):
        with open(user_file) as fh:
            header, *lines = fh.read().splitlines()
        kept = lines[:max_users]
        users = {line.split("\t", 1)[0] for line in kept}
        with open(os.path.join(out, f"{name}.user"), "w") as fh:
            fh.write("\n".join([header, *kept]) + "\n")
    else:
        users = _first_users(os.path.join(src_dir, f"{name}.inter"), max_users)
    with open(os.path.join(src_dir, f"{name}.inter")) as src, open(os.path.join(out, f"{name}.inter"), "w") as dst:
        dst.write(next(src))
        for line in src:
            if line.split("\t", 1)[0] in users:
                dst.write(line)
    shutil.copy(os.path.join(src_dir, f"{name}.item"), os.path.join(out, f"{name}.item"))
    return out


def _first_users(inter_path: str, max_users: int) -> set[str]:
    users: dict[str, None] = {}
    with open(inter_path) as fh:
        next(fh)
        for line in fh:
            users.setdefault(line.split("\t", 1)[0], None)
            if len(users) == max_users:
                break
    return set(users)


def ensure_imported(cfg) -> None:
    """With ``method.entities.import_from`` set and ``data.train`` absent, import the dataset into
    the folder of ``method.entities.items_path`` (global time split, rating >= 4 is a click)."""
    ent = cfg.method.entities
    fs, train = filesystem(cfg.data.train, cfg.data.s3_endpoint_url)
    if ent.import_from is None or fs.exists(train):
        return
    from distrec.data.importers.recbole import import_recbole

    out = os.path.dirname(ent.items_path)
    if os.path.abspath(os.path.join(out, "train")) != os.path.abspath(cfg.data.train):
        raise ConfigError(f"method.entities.import_from writes {out}/train, but data.train is "
                          f"{cfg.data.train}; point both at the same import folder")
    with tempfile.TemporaryDirectory() as tmp:
        src = ent.import_from
        if ent.import_max_users:
            src = write_user_slice(src, tmp, ent.import_max_users)
        log.info("importing %s into %s (users: %s)", ent.import_from, out, ent.import_max_users or "all")
        import_recbole(src, out, split="time", label_threshold=ent.like_threshold)


DISTILL_ENTRY = "distrec.methods.msd.distill:distill_worker"


def distill(cfg) -> dict:
    """Distil the knowledge into the student: a Ray Train job of its own (``<run.name>-distill``,
    so it keeps its own metrics.jsonl); the student goes to ``method.distill.output``. A rerun
    after a kill resumes from the distillation's last checkpoint."""
    from omegaconf import OmegaConf

    from distrec.train.launcher import run_training

    ensure_imported(cfg)
    # The distillation resumes by itself when its checkpoint was written for the same inputs
    # (distill.trajectory_inputs), so the launcher keeps, not sets aside, the earlier launch's records.
    distill_cfg = OmegaConf.merge(cfg, {"run": {"name": f"{cfg.run.name}-distill", "resume": True}})
    return run_training(distill_cfg, DISTILL_ENTRY)


def prepare_data(cfg) -> None:
    """``distrec run`` on an MSD config: the dataset, then (for the semantic model) the teacher's
    knowledge and the distilled student, each only when missing, so one command runs the chain."""
    from distrec.methods.msd.knowledge import run_knowledge_job
    from distrec.methods.msd.variants import with_variant

    cfg = with_variant(cfg)  # a report variant's teacher, student and switches
    ensure_imported(cfg)
    sem = cfg.method.semantics
    if not sem.enabled or sem.student or os.path.isfile(os.path.join(cfg.method.distill.output, "config.json")):
        return
    log.info("msd: no student at %s yet: generating the knowledge, then distilling", cfg.method.distill.output)
    run_knowledge_job(cfg)
    distill(cfg)
