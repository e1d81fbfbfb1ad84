"""StackRec recipe, one training stage: a NextItNet/SASRec next-item model of ``model.blocks``
blocks on TorchRec-sharded item embeddings, trained with sampled softmax and early stopping.

Runs in every worker (Ray Train via ``distrec run``/``distrec stackrec run``, or ``spawn``):
set-up -> restore (``run.init_from`` is how a stacked model arrives) -> train, evaluating on
``data.valid`` every ``method.eval_every`` steps; the best validation MRR@5 is checkpointed to
``<run_dir>/best``; a stage ends after ``method.patience`` evaluations without improvement or at
``trainer.max_steps`` -> the best weights are reloaded and scored on ``method.test`` ->
``<run_dir>/summary.json`` (the curve of validation metrics against wall-clock, time to best,
test metrics) for the scenario driver and the report.

After every evaluation that does not end the stage, a checkpoint in ``<run_dir>`` also holds the
loop's own state (curve, early stopping, clock): with ``run.resume`` (the scenario driver sets it)
or a Ray Train restart, an interrupted stage goes on from its last evaluation.

Wall-clock starts before the first training step (model set-up excluded: it is the same for
every variant) and counts training, evaluation and checkpoints.
"""

from __future__ import annotations

import itertools
import json
import math
import posixpath
import time
from dataclasses import asdict


from distrec.config.load import run_dir
from distrec.data.schema import FeatureSchema
from distrec.data.storage import filesystem, write_text_atomic
from distrec.errors import ConfigError
from distrec.metrics import RankingMetricAccumulator
from distrec.models.seqrec import SequenceDenseNet, SequenceRecModel
from distrec.recipes.ctr import open_feed
from distrec.sparse.tables import build_embeddings, embedding_configs, table_dims
from distrec.train.checkpoint import load_checkpoint, read_meta, save_checkpoint
from distrec.train.distributed import seed_everything, worker_info
from distrec.train.progress import ProgressMeter, configure_logging
from distrec.train.session import TrainSession

EARLY_STOP_METRIC = "mrr@5"
SUMMARY = "summary.json"
BEST = "best"
LOOP_STATE = "stackrec_loop"  # checkpoint meta: curve, early stopping and clock of a stage in flight


def sequence_field(cfg, schema: FeatureSchema):
    for s in schema.sequence:
        if s.name == cfg.model.sequence_field:
            if not s.owns_table:
                raise ConfigError(f"model.sequence_field '{s.name}' must own its item table in {schema.source}")
            return s
    raise ConfigError(
        f"model.sequence_field '{cfg.model.sequence_field}' is not a sequence field of {schema.source} "
        f"(sequence fields: {[s.name for s in schema.sequence]})"
    )


def build_model(cfg, schema: FeatureSchema) -> SequenceRecModel:
    """The model with its item table on the meta device (materialised only when sharded)."""
    field = sequence_field(cfg, schema)
    if schema.sparse or len(schema.sequence) != 1:
        raise ConfigError(f"stackrec reads one sequence field and nothing else; {schema.source} has "
                          f"sparse {[f.name for f in schema.sparse]}, sequence {schema.sparse_names}")
    dims = table_dims(schema, cfg.model.embedding_dim, cfg.sharding.tables)
    if dims[field.name] != cfg.model.embedding_dim:
        raise ConfigError("stackrec: the item table's embedding_dim must equal model.embedding_dim")
    sparse = build_embeddings(embedding_configs(schema, dims))
    dense = SequenceDenseNet(cfg.model, field.num_embeddings, field.max_len)
    return SequenceRecModel(sparse, dense, field.name, field.max_len)


def evaluate(session: TrainSession, feed, ks) -> dict:
    accumulator = RankingMetricAccumulator(ks)
    session.evaluate(feed, lambda out: accumulator.update(out["scores"], out["targets"], weights=out["weights"]))
    return accumulator.compute()


class EarlyStopping:
    """Best value so far and how many evaluations ago it was (higher is better)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = -math.inf
        self.since_best = 0

    def update(self, value: float) -> bool:
        """True when ``value`` is a new best."""
        if value > self.best:
            self.best, self.since_best = value, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.since_best >= self.patience


def train_worker(cfg, in_ray: bool = False) -> dict:
    configure_logging()
    worker = worker_info(cfg.trainer.use_gpu, cfg.trainer.cpus_per_worker)
    seed_everything(cfg.run.seed + worker.rank)  # negatives differ per rank; weights come from rank 0
    schema = FeatureSchema.load(cfg.data.schema)
    out = run_dir(cfg)
    session = TrainSession(cfg, build_model(cfg, schema), worker, out, in_ray)
    session.restore()
    method = cfg.method
    if not cfg.data.valid or not method.test:
        raise ConfigError("stackrec needs data.valid (early stopping) and method.test (final metrics)")
    train = open_feed(cfg, schema, worker, cfg.data.train, train=True)
    valid = open_feed(cfg, schema, worker, cfg.data.valid, train=False)
    test = open_feed(cfg, schema, worker, method.test, train=False)
    max_steps = cfg.trainer.max_steps if cfg.trainer.max_steps >= 0 else sum(
        train.steps(e) for e in range(cfg.trainer.epochs))
    progress = ProgressMeter(max_steps, cfg.data.batch_size * worker.world_size, cfg.trainer.log_every,
                             enabled=worker.is_chief)
    stopper = EarlyStopping(method.patience)
    ks = list(cfg.metrics.ks)
    curve, best_path, best_wall, elapsed = [], None, 0.0, 0.0
    if session.last_checkpoint is not None:  # resumed mid-stage: the loop goes on where it was
        loop = read_meta(session.last_checkpoint).get(LOOP_STATE)
        if loop is not None:
            curve, best_path, best_wall, elapsed = loop["curve"], loop["best_path"], loop["best_wall"], loop["elapsed"]
            stopper.best, stopper.since_best = loop["best"], loop["since_best"]
    state = session.state
    start = time.perf_counter() - elapsed
    while state.step < max_steps and not stopper.should_stop:
        steps = train.steps(state.epoch)
        epoch_batches = train.batches(state.epoch, start_batch=state.batch_in_epoch)
        while state.batch_in_epoch < steps and state.step < max_steps and not stopper.should_stop:
            # Train up to the next evaluation on a segment of the epoch: the pipeline drains at
            # its end, so no input all-to-all of a prefetched batch is in flight while evaluating.
            n = min(method.eval_every - state.step % method.eval_every, steps - state.batch_in_epoch,
                    max_steps - state.step)
            segment = itertools.islice(epoch_batches, n)
            for _ in range(n):
                outputs = session.pipeline.progress(segment)
                state.step += 1
                state.batch_in_epoch += 1
                session.inject_failure_if_due()
                log_now = state.step % progress.log_every == 0 or state.step == max_steps
                progress.step(state.step, session._mean_loss(outputs) if log_now else None, state.epoch)
            if state.step % method.eval_every and state.step < max_steps:
                continue  # the epoch ended between evaluations
            metrics = evaluate(session, valid, ks)
            wall = time.perf_counter() - start
            curve.append({"step": state.step, "wall_s": wall, **metrics})
            if stopper.update(metrics[EARLY_STOP_METRIC]):
                best_path = save_checkpoint(posixpath.join(out, BEST), state.step, session.dmp,
                                            session.opt.optimizer, session.opt.engine,
                                            meta={**asdict(state), "blocks": cfg.model.blocks}, keep=1)
                best_wall = time.perf_counter() - start
            resume_path = None
            if state.step < max_steps and not stopper.should_stop:
                # where to resume this stage from (run.resume, or Ray Train restarting the workers)
                loop = {"curve": curve, "best_path": best_path, "best_wall": best_wall, "best": stopper.best,
                        "since_best": stopper.since_best, "elapsed": time.perf_counter() - start}
                resume_path = save_checkpoint(out, state.step, session.dmp, session.opt.optimizer,
                                              session.opt.engine, keep=1, meta={
                                                  **asdict(_after_step(state, steps)), "blocks": cfg.model.blocks,
                                                  LOOP_STATE: loop})
            session.report({**metrics, "wall_s": wall}, resume_path, prefix="valid/")
        if state.batch_in_epoch >= steps:
            state.epoch += 1
            state.batch_in_epoch = 0
    total_wall = time.perf_counter() - start
    summary = {"blocks": cfg.model.blocks, "arch": cfg.model.arch, "steps": state.step,
               "best_step": curve[_best_index(curve)]["step"] if curve else 0,
               "best_valid": curve[_best_index(curve)] if curve else {},
               "time_to_best_s": best_wall, "total_s": total_wall,
               "stopped_early": stopper.should_stop, "best_checkpoint": best_path, "curve": curve}
    if best_path is not None:
        load_checkpoint(best_path, session.dmp)
        summary["test"] = evaluate(session, test, ks)
        session.report(summary["test"], prefix="test/")
    session.close()
    if worker.is_chief:
        fs, path = filesystem(out)
        fs.makedirs(path, exist_ok=True)
        write_text_atomic(posixpath.join(out, SUMMARY), json.dumps(summary, indent=2), fs)
    return summary


def _after_step(state, steps_in_epoch: int):
    """The train state to resume from: an epoch that just ended resumes at the next one."""
    if state.batch_in_epoch < steps_in_epoch:
        return state
    return type(state)(state.epoch + 1, 0, state.step, 0)


def _best_index(curve: list[dict]) -> int:
    values = [c[EARLY_STOP_METRIC] for c in curve]
    return values.index(max(values))
