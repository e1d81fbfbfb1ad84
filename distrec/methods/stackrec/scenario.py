"""StackRec scenarios: the stages of a stacked run, and the deep model from scratch to compare.

A config's ``method.stages`` is a list of (blocks, step budget, data) stages. Each stage is one
distributed training run (``distrec.methods.stackrec.recipe.train_worker``) under
``<output_dir>/<name>/<variant>/stage-<k>``. Between stages the driver (this process) stacks the
previous stage's best checkpoint when the depth doubles, or carries it over unchanged when the
depth stays (CL stages that only add data), and starts the next stage from it
(``run.init_from``: weights only, a fresh optimiser). A rerun of a variant skips the stages that
finished with the same config (``stage_record.json``) and resumes the first that did not from its
last evaluation (``stage_started.json`` + ``run.resume``; see ``distrec.methods.stackrec.recipe``).

Variants (``method.variant``): ``adjacent`` and ``cross`` (stacked, ``method.stack_method``
overridden), and ``scratch``: the deepest stage's model trained from scratch in one stage, on the
last stage's data, for ``method.scratch_max_steps`` steps (0: the sum of the stage budgets).

A ``distrec sweep`` trial of a StackRec config is one variant (``run_trial``, the recipe's trial
hook): the report sweeps ``method.variant`` x seeds (report.py); the trial's stages live under
``<sweep dir>/<trial id>/<variant>/stage-<k>``.

Scenarios differ in the data of each stage and in what the comparison counts:
  ts  every stage on ``data.train``; all stages are counted.
  cl  stage data = the first ``round(data_fraction * cl_chunks)`` nested chunks of ``data.train``;
      only the last stage (and its stacking) is counted: the shallower models exist already,
      trained when the earlier data arrived (the paper's main use).
  tf  stages take ``train``/``valid`` from the stage; the stages before the last are the source
      task, only the last stage (and its stacking) is counted.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

import fsspec
import torch
from omegaconf import OmegaConf

from distrec.config.load import config_to_dict, read_config_record, write_config_record
from distrec.data.importers.sessions import cl_chunk_glob
from distrec.errors import ConfigError
from distrec.methods.stackrec.stacking import METHODS, stack_checkpoint

log = logging.getLogger("distrec")
VARIANTS = ("scratch", *METHODS)
STAGE_RECORD = "stage_record.json"  # written when a stage finishes: a rerun skips that stage
STAGE_STARTED = "stage_started.json"  # written when a stage starts: a rerun resumes that stage

Launcher = Callable[[object], dict]  # stage config -> the stage's summary.json


@dataclass
class Stage:
    index: int
    blocks: int
    max_steps: int
    train: str
    valid: str
    counted: bool  # part of the time the comparison counts


def plan_stages(cfg, variant: str) -> list[Stage]:
    method = cfg.method
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant '{variant}'; expected one of {list(VARIANTS)}")
    if not method.stages:
        raise ConfigError("method.stages is empty; give at least one {blocks, max_steps} stage")
    stages = []
    for k, s in enumerate(method.stages):
        if k and s.blocks not in (method.stages[k - 1].blocks, 2 * method.stages[k - 1].blocks):
            raise ConfigError(f"method.stages[{k}].blocks={s.blocks}: a stage keeps the depth of the one "
                              f"before ({method.stages[k - 1].blocks}) or doubles it")
        train, valid = _stage_data(cfg, k, s)
        counted = method.scenario == "ts" or k == len(method.stages) - 1
        stages.append(Stage(k, s.blocks, s.max_steps, train, valid, counted))
    if variant == "scratch":
        last = stages[-1]
        budget = method.scratch_max_steps or sum(s.max_steps for s in stages)
        return [Stage(0, last.blocks, budget, last.train, last.valid, True)]
    return stages


def _stage_data(cfg, k: int, stage) -> tuple[str, str]:
    scenario = cfg.method.scenario
    valid = stage.valid or cfg.data.valid
    if scenario == "cl":
        chunks = round(stage.data_fraction * cfg.method.cl_chunks)
        if not 1 <= chunks <= cfg.method.cl_chunks:
            raise ConfigError(f"method.stages[{k}].data_fraction={stage.data_fraction} selects {chunks} of "
                              f"method.cl_chunks={cfg.method.cl_chunks} chunks")
        return cl_chunk_glob(cfg.data.train, chunks), valid
    if scenario == "tf":
        return stage.train or cfg.data.train, valid
    return cfg.data.train, valid


def variant_dir(cfg, variant: str) -> str:
    return posixpath.join(cfg.run.output_dir, cfg.run.name, variant)


def stage_config(cfg, variant: str, stage: Stage, init_from: str | None):
    """The full run config of one stage."""
    stage_cfg = OmegaConf.create(config_to_dict(cfg))
    stage_cfg.run.output_dir = variant_dir(cfg, variant)
    stage_cfg.run.name = f"stage-{stage.index}"
    stage_cfg.run.resume = False
    stage_cfg.run.init_from = init_from
    stage_cfg.model.blocks = stage.blocks
    stage_cfg.trainer.max_steps = stage.max_steps
    stage_cfg.data.train = stage.train
    stage_cfg.data.valid = stage.valid
    stage_cfg.method.variant = variant
    if variant in METHODS:
        stage_cfg.method.stack_method = variant
    return stage_cfg


def run_variant(cfg, variant: str, launch: Launcher) -> dict:
    """Run every stage of ``variant``; returns and writes ``<variant dir>/variant.json``."""
    from distrec.data.schema import FeatureSchema
    from distrec.methods.stackrec.recipe import build_model

    schema = FeatureSchema.load(cfg.data.schema, cfg.data.s3_endpoint_url)
    stages, records = plan_stages(cfg, variant), []
    init_from, stack_s = cfg.run.init_from, 0.0
    for stage in stages:
        stage_cfg = stage_config(cfg, variant, stage, None)
        done = read_config_record(_stage_file(stage_cfg, STAGE_RECORD), _comparable(stage_cfg)) \
            if len(records) == stage.index else None
        if done is not None:  # a rerun: this stage (and every one before it) finished earlier
            log.info("%s: stage %d finished earlier (%s)", variant, stage.index, stage_cfg.run.name)
            records.append(done["record"])
            continue
        previous = records[-1] if records else None
        if previous is not None:
            if not previous["summary"].get("best_checkpoint"):
                raise ConfigError(f"stage {stage.index - 1} of {variant} saved no best checkpoint "
                                  "(raise its max_steps to at least trainer.eval_every)")
            init_from = previous["summary"]["best_checkpoint"]
            if stage.blocks == 2 * previous["blocks"]:
                torch.manual_seed(cfg.run.seed + stage.index)  # the fresh parts' initialisation
                fresh_model = build_model(stage_cfg, schema)
                target = posixpath.join(variant_dir(cfg, variant), f"stage-{stage.index}", "stacked")
                init_from, stack_s = stack_checkpoint(init_from, target, fresh_model, variant,
                                                      list(cfg.method.fresh_parts))
            else:
                stack_s = 0.0
        stage_cfg.run.init_from = init_from
        # an unfinished earlier launch of this very stage: go on from its last evaluation
        started = _stage_file(stage_cfg, STAGE_STARTED)
        stage_cfg.run.resume = read_config_record(started, _comparable(stage_cfg)) is not None
        write_config_record(started, _comparable(stage_cfg), {})
        log.info("%s: stage %d, %d blocks, up to %d steps on %s%s", variant, stage.index, stage.blocks,
                 stage.max_steps, stage.train, f" from {init_from}" if init_from else "")
        summary = launch(stage_cfg)
        records.append({"stage": stage.index, "blocks": stage.blocks, "counted": stage.counted,
                        "stack_s": stack_s, "init_from": init_from, "summary": summary})
        write_config_record(_stage_file(stage_cfg, STAGE_RECORD), _comparable(stage_cfg), {"record": records[-1]})
    result = summarize_variant(variant, records)
    _write_json(posixpath.join(variant_dir(cfg, variant), "variant.json"), result)
    return result


def run_trial(cfg) -> dict:
    """A ``distrec sweep`` trial (``Recipe.trial``): the variant ``method.variant``, every stage on
    Ray Train; its final figures, flat, for the sweep's results (variant.json has the rest)."""
    return trial_metrics(run_variant(cfg, str(cfg.method.variant), ray_launcher))


def trial_metrics(result: dict) -> dict:
    """The numbers of a variant.json a sweep compares: test metrics as ``test_<name>``, the clocks."""
    out = {f"test_{k}": v for k, v in result["test"].items() if isinstance(v, (int, float))}
    out.update({k: result[k] for k in ("time_to_best_s", "time_to_best_all_stages_s", "eval_s", "checkpoint_s")})
    out["best_valid_mrr@5"] = result["best_valid_mrr@5"]
    out["steps"] = sum(result["steps"])
    return out


def _stage_file(stage_cfg, name: str) -> str:
    return posixpath.join(stage_cfg.run.output_dir, stage_cfg.run.name, name)


def _comparable(stage_cfg) -> dict:
    """The stage's config without its start checkpoint (known only after the stacking step), the
    resume switch, the variant and the scenario's stage list (this stage's depth, steps and data
    are in model/trainer/data)."""
    out = config_to_dict(stage_cfg)
    out["run"].pop("init_from", None)
    out["run"].pop("resume", None)
    out["method"].pop("stages", None)
    out["method"].pop("variant", None)  # the variant is the stage's folder (and method.stack_method)
    return out


def summarize_variant(variant: str, records: list[dict]) -> dict:
    """Training time to the best validation MRR@5 of the last stage: the counted stages before it
    in full, every counted stacking, and the last stage up to its best evaluation; plus the curve
    of validation MRR@5 against that clock (earlier counted stages shifted to come first). The
    clock counts training steps only; evaluation and checkpoint time are summed apart."""
    counted_s, all_s, curve, eval_s, checkpoint_s = 0.0, 0.0, [], 0.0, 0.0
    for i, rec in enumerate(records):
        s = rec["summary"]
        last = i == len(records) - 1
        all_s += rec["stack_s"] + (s["time_to_best_s"] if last else s["train_s"])
        if not rec["counted"]:
            continue
        eval_s, checkpoint_s = eval_s + s["eval_s"], checkpoint_s + s["checkpoint_s"]
        offset = counted_s + rec["stack_s"]
        curve += [{"train_s": offset + p["train_s"], "step": p["step"], "stage": rec["stage"],
                   "blocks": rec["blocks"], "mrr@5": p["mrr@5"]} for p in s["curve"]]
        counted_s = offset + (s["time_to_best_s"] if last else s["train_s"])
    final = records[-1]["summary"]
    return {
        "variant": variant,
        "blocks": records[-1]["blocks"],
        "time_to_best_s": counted_s,
        "time_to_best_all_stages_s": all_s,
        "eval_s": eval_s,
        "checkpoint_s": checkpoint_s,
        "best_valid_mrr@5": final.get("best_valid", {}).get("mrr@5"),
        "steps": [r["summary"]["steps"] for r in records],
        "test": final.get("test", {}),
        "stages": records,
        "curve": curve,
    }


def _write_json(path: str, payload: dict) -> None:
    from distrec.storage import filesystem, write_text_atomic

    fs, p = filesystem(path)
    fs.makedirs(posixpath.dirname(p), exist_ok=True)
    write_text_atomic(path, json.dumps(payload, indent=2), fs)


def read_json(path: str) -> dict:
    with fsspec.open(path, "r") as fh:
        return json.load(fh)


# --- launchers -----------------------------------------------------------------------------------


def ray_launcher(stage_cfg) -> dict:
    """One stage on Ray Train workers (``trainer.num_workers``), like ``distrec run``."""
    from distrec.methods import train

    train(stage_cfg)
    return read_json(posixpath.join(stage_cfg.run.output_dir, stage_cfg.run.name, "summary.json"))


def _spawned_stage(rank: int, cfg_dict: dict) -> dict:
    from distrec.methods.stackrec.recipe import train_worker

    return train_worker(OmegaConf.create(cfg_dict))


def spawn_launcher(stage_cfg) -> dict:
    """One stage on ``trainer.num_workers`` local gloo processes without Ray (tests, benchmarks)."""
    from distrec.config.load import save_resolved_config
    from distrec.train.local_spawn import spawn

    save_resolved_config(stage_cfg, posixpath.join(stage_cfg.run.output_dir, stage_cfg.run.name))
    results = spawn(_spawned_stage, stage_cfg.trainer.num_workers, config_to_dict(stage_cfg),
                    timeout_s=stage_cfg.trainer.timeout_s)
    return results[0]


LAUNCHERS = {"ray": ray_launcher, "spawn": spawn_launcher}
