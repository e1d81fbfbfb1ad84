"""Conure: bytes each additional task costs to store, vs fine-tuning everything and one model per task.

    python benchmarks/conure_bytes_per_task.py [--presets smoke ml-100k ttl cluster-1b] [--tiny]

For every Conure preset in configs/conure (a config with ``method.tasks``; base.yaml is their
shared base), the models are built by distrec's own code (``distrec.methods.conure.recipe.build_model``)
with the heads ``learn_task`` gives each strategy, on the ``meta`` device (shapes and dtypes only:
the cluster preset's ~2B parameters are never allocated), and their state dicts are compared:

  conure        model with tasks 1..k minus model with tasks 1..k-1: the keys task k adds, i.e.
                its packed mask buffers ``mask_k`` (uint8, 8 conv weights per byte) in every
                masked conv layer, plus its head (dense.heads.<task>), at the parameter dtype
  finetune_all  one backbone, overwritten by every task (old tasks are forgotten), built with
                ``method.strategy=finetune_all`` (no mask buffers). The backbone and embeddings add
                0 bytes per task; distrec keeps the new task's head (the task cannot be served
                without it)
  separate      a fresh model per task (learn_task builds it with that task's head only, with
                ``method.strategy=separate``): the bytes of a full model copy
Each baseline row's ``checkpoint_bytes`` is the size of that strategy's model state after task k
(finetune_all: the one model; separate: task k's own model).

Task sizes (item vocabulary, targets, classes) come from the task data: the preset's data_root
when it is there, else the data the preset's ``method.prepare`` importer builds (into a temporary
folder), else the ``../shared/data/ttl-example`` files imported as configs/conure/ttl.yaml says;
presets whose data is remote (cluster-1b: S3) use the ASSUMED sizes below, marked as such in the
JSON (change them with ``--assume PRESET.num_items=N`` / ``--assume PRESET.TASK=N``).
Writes benchmarks/results/conure_bytes_per_task.json.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    REPO,
    add_common_args,
    machine_info,
    print_table,
    quiet,
    settings,
    write_report,
)

NAME = "conure_bytes_per_task"
CONFIG_DIR = REPO / "configs" / "conure"
SHARED_DATA = REPO.parent / "shared" / "data"
# every preset in configs/conure; --tiny: one of each data source (prepare importer, TTL example,
# remote data with assumed sizes)
DEFAULTS = dict(presets=None)
TINY = dict(presets=["smoke", "ttl", "cluster-1b"])

# Sizes for presets whose task data is not on this machine. cluster-1b: the item table size is the
# preset's own comment ("a 4M-item table (~1B embedding parameters at 256 channels)"); targets and
# classes are the TTL tasks' output sizes in the Conure authors' code (fajieyuan/SIGIR2021_Conure,
# config.py task_itemsize = [645974, 17880, 7540, 3, 9, 7]: T2 click targets 17,880, gender 3,
# age 9); max_len is the TTL source length (100), which adds no parameters.
ASSUMED = {
    "cluster-1b": {"num_items": 4_000_000, "max_len": 100,
                   "num_outputs": {"t2_item_rec": 17_880, "t3_gender": 3, "t4_age": 9}},
}


# --- task sizes ---------------------------------------------------------------------------------


def preset_paths(names) -> tuple[dict[str, Path], dict[str, str]]:
    """{name: config path} of the presets to measure and {name: why skipped} of the others."""
    from distrec.errors import DistrecError
    from distrec.methods import load_config

    if names:
        return {Path(n).stem: (Path(n) if n.endswith(".yaml") else CONFIG_DIR / f"{n}.yaml") for n in names}, {}
    chosen, skipped = {}, {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        try:
            cfg = load_config(str(path))
        except DistrecError as exc:  # base.yaml: no tasks, so its data paths do not resolve
            skipped[path.stem] = f"not loadable on its own: {str(exc).splitlines()[0].replace(f'{REPO}/', '')}"
            continue
        if not cfg.method.tasks:
            skipped[path.stem] = "no method.tasks"
            continue
        chosen[path.stem] = path
    return chosen, skipped


def _is_remote(method) -> bool:
    return "://" in str(method.data_root or "") or any("://" in str(t.data) for t in method.tasks)


def _resolved(cfg, source: str, data_root: str | None = None) -> dict:
    from distrec.methods.conure.tasks import resolve_tasks

    tasks = resolve_tasks(cfg)
    item = tasks[0].schema.sequence[0]
    return {"specs": [t.spec for t in tasks], "schema": tasks[0].schema, "source": source,
            "data_root": data_root or cfg.method.data_root, "num_items": item.num_embeddings,
            "max_len": item.max_len, "assumed": False}


def _ttl_example(cfg, tmp: str):
    """The TTL example files imported as configs/conure/ttl.yaml's comment says (task i from
    example_task<i>.csv; later tasks with T1's item vocabulary); None if a task has no file."""
    from distrec.methods import importers

    IMPORTERS = importers()

    src = SHARED_DATA / "ttl-example"
    files = [src / f"example_task{i + 1}.csv" for i in range(len(cfg.method.tasks))]
    kinds = [t.kind or ("next_item" if i == 0 else None) for i, t in enumerate(cfg.method.tasks)]
    if not all(f.is_file() for f in files) or kinds[0] != "next_item" or None in kinds:
        return None
    root = posixpath.join(tmp, "ttl-example")
    num_items = None
    for task, kind, f in zip(cfg.method.tasks, kinds, files):
        schema = IMPORTERS["conure_ttl"](str(f), posixpath.join(root, task.data), kind=kind, num_items=num_items)
        num_items = num_items or schema.sequence[0].num_embeddings
    return root


def task_sizes(name: str, cfg, tmp: str, assume: dict) -> tuple[object, dict]:
    """(config, sizes): the tasks' specs and T1's schema from the first data source that has them."""
    from omegaconf import OmegaConf

    from distrec.errors import DistrecError

    method = cfg.method
    if not _is_remote(method):
        try:
            return cfg, _resolved(cfg, "the preset's data_root")
        except DistrecError:
            pass
        if method.prepare is not None:
            from distrec.methods import importers

            root = posixpath.join(tmp, f"{name}-prepared")
            importers()[method.prepare.importer](method.prepare.src, root, max_len=method.prepare.max_len)
            cfg = OmegaConf.merge(cfg, {"method": {"data_root": root}})
            return cfg, _resolved(cfg, f"method.prepare: {method.prepare.importer} from {method.prepare.src} "
                                       f"(max_len {method.prepare.max_len})", "<temporary folder>")
        root = _ttl_example(cfg, tmp)
        if root is not None:
            cfg = OmegaConf.merge(cfg, {"method": {"data_root": root}})
            return cfg, _resolved(cfg, "../shared/data/ttl-example imported as ttl.yaml's comment says "
                                       "(the example files, not the full TTL set)", "<temporary folder>")
    return cfg, _assumed(name, cfg, assume)


def _assumed(name: str, cfg, assume: dict) -> dict:
    from distrec.data.schema import FeatureSchema, SequenceField
    from distrec.methods.conure.importers.common import ITEM_FIELD
    from distrec.methods.conure.model import TaskSpec

    sizes = {**ASSUMED.get(name, {}), **assume.get(name, {})}
    sizes["num_outputs"] = {**ASSUMED.get(name, {}).get("num_outputs", {}),
                            **assume.get(name, {}).get("num_outputs", {})}
    specs = []
    for i, t in enumerate(cfg.method.tasks):
        kind = t.kind or ("next_item" if i == 0 else None)
        n = sizes.get("num_items") if kind == "next_item" else (t.num_outputs or sizes["num_outputs"].get(t.name))
        if kind is None or not n:
            raise SystemExit(f"{name}: the task data of {t.name} is not on this machine ({cfg.method.data_root}) "
                             f"and no size is assumed for it: pass --assume {name}.num_items=N / "
                             f"--assume {name}.{t.name}=N (and set its kind in the config)")
        specs.append(TaskSpec(t.name, kind, int(n)))
    schema = FeatureSchema(sparse=(), labels=(), sequence=(
        SequenceField(ITEM_FIELD, max_len=int(sizes.get("max_len", 50)), num_embeddings=int(sizes["num_items"])),))
    return {"specs": specs, "schema": schema, "data_root": cfg.method.data_root, "num_items": int(sizes["num_items"]),
            "max_len": int(sizes.get("max_len", 50)), "assumed": True,
            "source": f"ASSUMED sizes (task data at {cfg.method.data_root} is not on this machine): see ASSUMED "
                      "in benchmarks/conure_bytes_per_task.py"}


# --- measuring the models -----------------------------------------------------------------------


def build_on_meta(cfg, schema, specs):
    """distrec's Conure model for ``specs`` with every tensor on the meta device."""
    import torch

    from distrec.methods.conure.recipe import build_model

    with torch.device("meta"):
        model = build_model(cfg, schema, list(specs))
    assert all(t.is_meta for t in model.state_dict().values()), "a tensor was allocated off meta"
    return model


def with_strategy(cfg, strategy: str):
    from omegaconf import OmegaConf

    return OmegaConf.merge(cfg, {"method": {"strategy": strategy}})


def state_entries(model) -> dict[str, tuple[list[int], str, int]]:
    """{state-dict key: (shape, dtype, bytes)}: what a checkpoint of the model holds."""
    return {k: (list(v.shape), str(v.dtype).replace("torch.", ""), v.numel() * v.element_size())
            for k, v in model.state_dict().items()}


def parameter_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def measure_preset(cfg, sizes: dict) -> dict:
    from distrec.methods.conure.masks import MaskedCausalConv1d

    specs, schema = sizes["specs"], sizes["schema"]
    # conure and finetune_all: learn_task builds the model with the heads of tasks 1..k
    shared = [state_entries(build_on_meta(cfg, schema, specs[:k])) for k in range(1, len(specs) + 1)]
    finetune_all = [state_entries(build_on_meta(with_strategy(cfg, "finetune_all"), schema, specs[:k]))
                    for k in range(1, len(specs) + 1)]
    full = build_on_meta(cfg, schema, specs)
    conv_names = {n for n, m in full.named_modules() if isinstance(m, MaskedCausalConv1d)}
    convs = [m for m in full.modules() if isinstance(m, MaskedCausalConv1d)]
    dtypes = sorted({str(p.dtype).replace("torch.", "") for p in full.parameters()})
    per_task = []
    for k, spec in enumerate(specs, start=1):
        before = shared[k - 2] if k > 1 else {}
        after = shared[k - 1]
        for key, entry in before.items():  # what earlier tasks own does not change
            assert after[key] == entry, (spec.name, key, entry, after.get(key))
        new = {key: after[key] for key in sorted(set(after) - set(before))}
        mask_keys = [key for key in new if key.rsplit(".", 1)[0] in conv_names and key.rsplit(".", 1)[1] == f"mask_{k}"]
        head_keys = [key for key in new if key.startswith(f"dense.heads.{spec.name}.")]
        other_keys = [key for key in new if key not in mask_keys and key not in head_keys]
        mask_bytes = sum(new[key][2] for key in mask_keys)
        head_bytes = sum(new[key][2] for key in head_keys)
        other_bytes = sum(new[key][2] for key in other_keys)
        separate = build_on_meta(with_strategy(cfg, "separate"), schema, [spec])  # learn_task: specs = [task.spec]
        separate_bytes = parameter_bytes(separate)
        conure_bytes = sum(e[2] for e in new.values()) if k > 1 else sum(e[2] for e in after.values())
        row = {
            "k": k, "task": spec.name, "kind": spec.kind, "num_outputs": spec.num_outputs,
            "conure": {"bytes": conure_bytes, "mask_bytes": mask_bytes, "head_bytes": head_bytes,
                       "other_bytes": other_bytes, "mask_layers": len(mask_keys),
                       "fraction_of_full_copy": conure_bytes / separate_bytes,
                       "old_tasks": "kept, bit-identical (frozen weights + their masks)",
                       "new_state": {key: {"shape": s, "dtype": d, "bytes": b} for key, (s, d, b) in new.items()
                                     if key not in mask_keys}},
            "finetune_all": {"bytes": head_bytes if k > 1 else parameter_bytes(build_on_meta(cfg, schema, specs[:1])),
                             "backbone_and_embedding_bytes": 0 if k > 1 else None,
                             "checkpoint_bytes": sum(e[2] for e in finetune_all[k - 1].values()),
                             "old_tasks": "forgotten (backbone overwritten)"},
            "separate": {"bytes": separate_bytes, "params": sum(p.numel() for p in separate.parameters()),
                         "checkpoint_bytes": sum(e[2] for e in state_entries(separate).values()),
                         "old_tasks": "kept (a model each)"},
        }
        per_task.append(row)
    conv_weights = sum(c.weight.numel() for c in convs)
    first, rest = per_task[0], per_task[1:]
    totals = {
        "conure": sum(r["conure"]["bytes"] for r in per_task),
        "finetune_all": first["finetune_all"]["bytes"] + sum(r["finetune_all"]["bytes"] for r in rest),
        "separate": sum(r["separate"]["bytes"] for r in per_task),
    }
    return {
        "model": {"channels": cfg.model.channels, "blocks": cfg.model.blocks, "kernel_size": cfg.model.kernel_size,
                  "conv_layers": len(convs), "conv_weights": conv_weights,
                  "conv_weight_bytes": sum(c.weight.numel() * c.weight.element_size() for c in convs),
                  "param_dtypes": dtypes, "params_all_tasks": sum(p.numel() for p in full.parameters())},
        "first_task": first,
        "per_task": rest,
        "totals_after_all_tasks": totals,
    }


def _parse_assume(items) -> dict:
    out: dict = {}
    for item in items or ():
        try:
            key, value = item.split("=", 1)
            preset, field = key.rsplit(".", 1)
            value = int(value)
        except ValueError:
            raise SystemExit(f"--assume {item!r}: expected PRESET.num_items=N, PRESET.max_len=N or PRESET.TASK=N")
        entry = out.setdefault(preset, {"num_outputs": {}})
        if field in ("num_items", "max_len"):
            entry[field] = value
        else:
            entry["num_outputs"][field] = value
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=None,
                        help="preset names in configs/conure or config paths (default: every preset)")
    parser.add_argument("--assume", nargs="*", default=None, metavar="PRESET.KEY=N",
                        help="sizes for presets whose task data is remote: num_items, max_len or a task name")
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.device != "cpu":
        parser.error("this benchmark counts bytes of models built on the meta device (--device cpu)")
    quiet()
    s = settings(args, TINY, DEFAULTS)
    presets, skipped = preset_paths(s["presets"])
    assume = _parse_assume(args.assume)
    from distrec.errors import DistrecError
    from distrec.methods import load_config

    results = {}
    with tempfile.TemporaryDirectory(prefix="distrec-bench-conure-") as tmp:
        for name, path in presets.items():
            try:
                cfg, sizes = task_sizes(name, load_config(str(path)), tmp, assume)
            except DistrecError as exc:  # e.g. ../shared/data absent: the other presets still count
                if s["presets"]:
                    raise
                skipped[name] = f"task data unavailable: {str(exc).splitlines()[0]}"
                continue
            entry = measure_preset(cfg, sizes)
            entry = {"config": os.path.relpath(path, REPO),
                     "data": {k: v for k, v in sizes.items() if k not in ("specs", "schema")},
                     "tasks": [{"name": t.name, "kind": t.kind, "num_outputs": t.num_outputs} for t in sizes["specs"]],
                     "prune_ratio": cfg.method.prune_ratio, **entry}
            results[name] = entry

    rows = []
    for name, e in results.items():
        for r in e["per_task"]:
            rows.append([name, f"{r['task']} ({r['kind']}, {r['num_outputs']:,})", r["conure"]["mask_bytes"],
                         r["conure"]["head_bytes"], r["conure"]["bytes"], _pct(r["conure"]["fraction_of_full_copy"]),
                         r["finetune_all"]["bytes"], "forgotten", r["separate"]["bytes"]])
    print_table(["preset", "task k>1 (kind, outputs)", "conure masks", "conure head", "conure B/task",
                 "of full copy", "finetune_all B/task", "ft_all: old tasks", "separate B/task"], rows,
                title="Bytes each additional task costs to store (models built by distrec on meta; fp32 parameters, "
                      "masks packed 8 weights/byte)")
    print("finetune_all: backbone and embeddings add 0 B per task (overwritten: old tasks forgotten); the B/task "
          "shown is the new task's head it keeps. separate: a full model copy (embeddings + backbone + head).")
    print_table(["preset", "tasks", "sizes from", "conv weights", "masks B/task", "T1 model B",
                 "conure total B", "finetune_all total B", "separate total B"],
                [[name, len(e["tasks"]), "ASSUMED" if e["data"]["assumed"] else "task data", e["model"]["conv_weights"],
                  e["per_task"][0]["conure"]["mask_bytes"] if e["per_task"] else 0, e["first_task"]["conure"]["bytes"],
                  e["totals_after_all_tasks"]["conure"], e["totals_after_all_tasks"]["finetune_all"],
                  e["totals_after_all_tasks"]["separate"]] for name, e in results.items()],
                title="After all of each preset's tasks (T1 = the whole first model, masks included)")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")

    report = {
        "benchmark": NAME,
        "what": "bytes each additional Conure task costs to store (its packed masks + its head) vs fine-tuning "
                "everything (one model, old tasks forgotten) vs one model per task, per configs/conure preset, "
                "from the state dicts of distrec's models built on the meta device",
        "settings": {**s, "presets": list(presets), "device": args.device, "tiny": args.tiny,
                     "assume": assume, "built_on": "meta",
                     "bytes": "numel x element_size of each state-dict tensor (masks: uint8, packed)"},
        "results": results,
        "skipped": skipped,
        "machine": machine_info(args.device),
    }
    write_report(NAME, report, args.out_dir, args.device)
    return report


if __name__ == "__main__":
    main()
