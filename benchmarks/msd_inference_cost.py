"""Serving cost of the MSD student path vs the base CTR model, side by side, one process.

    python benchmarks/msd_inference_cost.py [CONFIG] [--batches 20] [--tiny] [--device cpu|cuda]

Runs validation batches of CONFIG (default configs/msd/ml-100k.yaml; the data must be imported)
through three models with the same tables, interleaved, best of ``--rounds``:
  base           the CTR tower on ID embeddings (method.semantics.enabled=false)
  msd, cache     the student path as served: cached vectors for frequent items, online encoding
                 for rare ones (cache hit rate reported over target and chosen history items)
  msd, online    every item encoded online (what the cache saves)
The cache build itself (all items, done offline / every ``cache_refresh_every`` steps) is timed
separately. The student is the distilled checkpoint when it exists, else the base MiniLM.
Writes benchmarks/results/msd_inference_cost.json.
"""

from __future__ import annotations

import argparse
import os
import time

import torch  # noqa: E402
from _common import add_common_args, machine_info, print_table, write_report


def _models(cfg, schema):
    from omegaconf import OmegaConf
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    from distrec.methods.msd.recipe import build_model

    def materialise(model):
        model.sparse = EmbeddingBagCollection(tables=model.sparse.embedding_bag_configs(), device="cpu")
        return model.eval()

    torch.manual_seed(0)
    base = materialise(build_model(OmegaConf.merge(cfg, {"method": {"semantics": {"enabled": False}}}), schema))
    msd = materialise(build_model(cfg, schema))
    msd.sparse.load_state_dict(base.sparse.state_dict())
    return base, msd


def _batches(cfg, schema, n: int, batch_size: int) -> list:
    from distrec.train.data_feed import DataFeed

    feed = DataFeed.open(cfg.data.valid, schema, batch_size=batch_size, rank=0, world_size=1, seed=0,
                         shuffle=False, loader_workers=0, s3_endpoint_url=cfg.data.s3_endpoint_url)
    out = []
    for batch in feed.batches(epoch=0):
        out.append(batch)
        if len(out) == n:
            break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="configs/msd/ml-100k.yaml")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=512)
    add_common_args(parser)
    args = parser.parse_args()
    if args.device != "cpu":
        parser.error("this benchmark measures CPU serving only (--device cpu)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from distrec.data.schema import FeatureSchema
    from distrec.methods import load_config
    from distrec.methods.msd.model import ITEM, single_ids, top_k_history

    overrides = list(args.overrides)
    cfg = load_config(args.config, overrides)
    if not os.path.isfile(os.path.join(cfg.method.semantics.student or cfg.method.distill.output, "config.json")):
        from distrec.methods.msd.student import default_student_path

        cfg = load_config(args.config, overrides + [f"method.semantics.student={default_student_path()}"])
    n_batches, batch_size, rounds = (2, 64, 1) if args.tiny else (args.batches, args.batch_size, args.rounds or 3)
    schema = FeatureSchema.load(cfg.data.schema)
    base, msd = _models(cfg, schema)
    batches = _batches(cfg, schema, n_batches, batch_size)
    items = msd.dense.items

    t0 = time.perf_counter()
    with torch.no_grad():
        items.refresh(msd.dense.student)
        if msd.dense.users is not None:
            msd.dense.users.refresh(msd.dense.student)
    refresh_s = time.perf_counter() - t0

    hits = []
    for batch in batches:  # cache hit rate over the ids the student path looks up
        ids = single_ids(batch.sparse, ITEM)
        looked = [ids]
        if msd.dense.item_fusion:
            hist = batch.sparse["hist_item_id"].to_padded_dense(padding_value=0)
            looked.append(top_k_history(items.cache, items.cache[ids], hist, msd.dense.top_k).reshape(-1))
        looked = torch.cat(looked)
        hits.append(items.cached_share(looked))

    cached_mask = items.is_cached.clone()

    def run(model, all_online: bool = False):
        items.is_cached.copy_(cached_mask)
        if all_online:
            items.is_cached[1:] = False
        with torch.no_grad():
            for batch in batches:
                model(batch)
        items.is_cached.copy_(cached_mask)

    variants = {"base": lambda: run(base), "msd, cache": lambda: run(msd), "msd, online": lambda: run(msd, True)}
    best = {name: float("inf") for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            items.stale = False
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    rows_total = n_batches * batch_size
    results = {name: {"ms_per_batch": 1000 * s / n_batches, "rows_per_s": rows_total / s,
                      "vs_base": s / best["base"]} for name, s in best.items()}
    hit_rate = sum(hits) / len(hits)
    print_table(["model", "ms/batch", "rows/s", "x base"],
                [[n, r["ms_per_batch"], r["rows_per_s"], r["vs_base"]] for n, r in results.items()],
                title=f"MSD serving cost, {n_batches} batches of {batch_size}, cache hit rate {hit_rate:.3f}, "
                      f"cache build {refresh_s:.1f} s for {items.num_entities} items")
    write_report("msd_inference_cost", {
        "config": args.config, "batches": n_batches, "batch_size": batch_size, "rounds": rounds,
        "student": msd.dense.student.path, "cache_min_freq": cfg.method.semantics.cache_min_freq,
        "cache_hit_rate": hit_rate, "cache_build_s": refresh_s, "results": results,
        "machine": machine_info(args.device), "tiny": args.tiny,
    }, args.out_dir, args.device)


if __name__ == "__main__":
    main()
