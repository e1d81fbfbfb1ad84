"""Worker functions the MSD tests run in spawned gloo processes (importable by the children)."""

from __future__ import annotations

from omegaconf import OmegaConf


def distill(rank: int, cfg_dict: dict) -> dict:
    from distrec.methods.msd.distill import distill_worker

    return distill_worker(OmegaConf.create(cfg_dict))


def train_ctr(rank: int, cfg_dict: dict) -> dict:
    from distrec.methods.msd.recipe import train_worker

    return train_worker(OmegaConf.create(cfg_dict))


def train_and_compare(rank: int, cfg_dict: dict) -> dict:
    """Train the MSD model one epoch; report which parameters changed and the validation metrics."""
    import torch

    from distrec.config.load import run_dir
    from distrec.data.schema import FeatureSchema
    from distrec.methods.ctr.recipe import evaluate
    from distrec.methods.msd.recipe import build_model
    from distrec.train.distributed import seed_everything, worker_info
    from distrec.train.loop import open_feed
    from distrec.train.progress import ProgressMeter
    from distrec.train.session import TrainSession

    cfg = OmegaConf.create(cfg_dict)
    worker = worker_info(False)
    seed_everything(cfg.run.seed)
    schema = FeatureSchema.load(cfg.data.schema)
    session = TrainSession(cfg, build_model(cfg, schema), worker, run_dir(cfg), in_ray=False)
    dense = session.dmp.module.dense
    before = {n: p.detach().clone() for n, p in dense.named_parameters()}
    train = open_feed(cfg, schema, worker, cfg.data.train, train=True)
    valid = open_feed(cfg, schema, worker, cfg.data.valid, train=False)
    steps = min(train.steps(0), cfg.trainer.max_steps)
    session.train_epoch(train, ProgressMeter(steps, cfg.data.batch_size * 2, 10, enabled=False))
    metrics = evaluate(session, valid, cfg, schema)
    changed = {n: not torch.equal(before[n], p.detach()) for n, p in dense.named_parameters()}
    trainable = {n: p.requires_grad for n, p in dense.named_parameters()}
    session.close()
    return {"metrics": metrics, "changed": changed, "trainable": trainable, "steps": session.state.step}


def evaluate_untrained(rank: int, cfg_dict: dict) -> dict:
    """The MSD recipe's evaluation of a freshly built model, and its raw per-row outputs."""
    import torch

    from distrec.data.schema import FeatureSchema
    from distrec.methods.msd.recipe import build_model, evaluate, rare_items
    from distrec.train.distributed import worker_info
    from distrec.train.loop import open_feed
    from distrec.train.session import TrainSession

    cfg = OmegaConf.create(cfg_dict)
    schema = FeatureSchema.load(cfg.data.schema)
    session = TrainSession(cfg, build_model(cfg, schema), worker_info(False), cfg.run.output_dir, in_ray=False)
    rows = []
    session.evaluate(open_feed(cfg, schema, session.worker, cfg.data.valid, train=False),
                     lambda out: rows.append((out["preds"], out["items"], out["weights"])))
    metrics = evaluate(session, open_feed(cfg, schema, session.worker, cfg.data.valid, train=False), cfg, schema,
                       rare=rare_items(cfg, schema))
    session.close()
    preds, items, weights = (torch.cat(t) for t in zip(*rows))
    real = weights > 0
    return {"metrics": metrics, "preds": preds[real].tolist(), "items": items[real].tolist()}
