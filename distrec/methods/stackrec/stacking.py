"""Stacking L -> 2L blocks, by value, on model state dicts and on DCP checkpoints.

Block maps (StackRec, section 3): ``adjacent`` new block i <- old block i // 2 (each block
twice in a row: 0 0 1 1 ...), ``cross`` new block i <- old block i mod L (the whole stack twice:
0 1 0 1 ...). Every tensor of the new model is a fresh copy (``clone``): the two copies of a
block never share storage, so they diverge from the first update.

``fresh_parts`` (the authors' code: all three) start from a fresh initialisation instead of a
copy: ``layernorm`` (every LayerNorm, in blocks and after them), ``alpha`` (every block's
residual scale: 0, so each block, and so the stacked model, starts as the identity) and
``output`` (the output layer). Item embeddings, conv/attention/FFN weights and SASRec's
positions are always copied. The optimiser always starts fresh (the new checkpoint holds
weights only and is loaded with ``run.init_from``).

Checkpoints: ``stack_checkpoint`` reads a DCP checkpoint written by a run of any world size
into ONE process (every table whole: fine up to the host's memory; a table larger than that
needs a sharded variant, not written), builds the 2L state and writes it as a DCP checkpoint
that a run of any world size loads with ``run.init_from`` (DCP reshards it on load).
"""

from __future__ import annotations

import logging
import re
import time

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from distrec.errors import CheckpointError, ConfigError
from distrec.methods.stackrec.config import FreshPart, StackMethod
from distrec.train.checkpoint import save_checkpoint

log = logging.getLogger("distrec")
METHODS = StackMethod.values()
FRESH_PARTS = FreshPart.values()
BLOCK_KEY = re.compile(r"^dense\.body\.blocks\.(\d+)\.(.+)$")
OUTPUT_PREFIX = "dense.head."
MODEL = "model"


def block_map(old_blocks: int, method: str) -> list[int]:
    """Source block of each of the 2L new blocks."""
    if method not in METHODS:
        raise ConfigError(f"method.stack_method: unknown '{method}'; expected one of {list(METHODS)}")
    if old_blocks < 1:
        raise ConfigError(f"stacking needs at least one block, got {old_blocks}")
    if method == "adjacent":
        return [i // 2 for i in range(2 * old_blocks)]
    return [i % old_blocks for i in range(2 * old_blocks)]


def count_blocks(state: dict) -> int:
    indices = {int(m.group(1)) for k in state if (m := BLOCK_KEY.match(k))}
    if indices != set(range(len(indices))):
        raise CheckpointError(f"block indices in the state are not 0..L-1: {sorted(indices)}")
    return len(indices)


def part_names(model: nn.Module) -> dict[str, set[str]]:
    """State keys of ``model`` in each resettable part (names match a DMP's state dict)."""
    parts: dict[str, set[str]] = {p: set() for p in FRESH_PARTS}
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm):
            parts["layernorm"].update(f"{name}.{p}" for p, _ in module.named_parameters(recurse=False))
    for name, _ in model.named_parameters():
        if name.rsplit(".", 1)[-1].startswith("alpha"):
            parts["alpha"].add(name)
        if name.startswith(OUTPUT_PREFIX):
            parts["output"].add(name)
    return parts


def stack_state_dict(old: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], method: str,
                     fresh_parts=FRESH_PARTS, parts: dict[str, set[str]] | None = None) -> dict[str, torch.Tensor]:
    """The 2L state: ``fresh`` (a newly initialised 2L model's state, same key layout) filled with
    copies of ``old`` (the L-block state) except for the ``fresh_parts``.

    ``parts`` maps each part to its keys in the 2L model (``part_names``); without it, keys are
    classified by name (``norm`` in the module name, ``alpha*`` parameters, ``dense.head.``).
    """
    unknown = sorted(set(fresh_parts) - set(FRESH_PARTS))
    if unknown:
        raise ConfigError(f"method.fresh_parts: unknown {unknown}; expected some of {list(FRESH_PARTS)}")
    old_blocks = count_blocks(old)
    if count_blocks(fresh) != 2 * old_blocks:
        raise CheckpointError(f"stacking {old_blocks} blocks needs a {2 * old_blocks}-block model, "
                              f"got {count_blocks(fresh)}")
    mapping = block_map(old_blocks, method)
    reset = {key for part in fresh_parts for key in (parts or _parts_by_name(fresh))[part]}
    out: dict[str, torch.Tensor] = {}
    for key, value in fresh.items():
        if key in reset:
            out[key] = value.detach().clone()
            continue
        m = BLOCK_KEY.match(key)
        source = f"dense.body.blocks.{mapping[int(m.group(1))]}.{m.group(2)}" if m else key
        if source not in old:
            raise CheckpointError(f"the {old_blocks}-block state has no '{source}' (needed for '{key}')")
        if old[source].shape != value.shape:
            raise CheckpointError(f"'{source}' has shape {tuple(old[source].shape)}, the stacked model "
                                  f"expects {tuple(value.shape)} for '{key}' (same model config?)")
        out[key] = old[source].detach().clone()
    return out


def _parts_by_name(state: dict) -> dict[str, set[str]]:
    parts: dict[str, set[str]] = {p: set() for p in FRESH_PARTS}
    for key in state:
        module, _, leaf = key.rpartition(".")
        if "norm" in module.rsplit(".", 1)[-1]:
            parts["layernorm"].add(key)
        if leaf.startswith("alpha"):
            parts["alpha"].add(key)
        if key.startswith(OUTPUT_PREFIX):
            parts["output"].add(key)
    return parts


# --- checkpoints ---------------------------------------------------------------------------------


def read_model_state(path: str) -> dict[str, torch.Tensor]:
    """Every model tensor of a distrec DCP checkpoint as one whole CPU tensor (single process)."""
    reader = FsspecReader(path)
    try:
        metadata = reader.read_metadata()
    except FileNotFoundError:
        raise CheckpointError(f"{path} is not a DCP checkpoint (no .metadata)") from None
    prefix = f"{MODEL}."
    state = {
        key[len(prefix):]: torch.empty(md.size, dtype=md.properties.dtype)
        for key, md in metadata.state_dict_metadata.items()
        if key.startswith(prefix) and isinstance(md, TensorStorageMetadata)
    }
    if not state:
        raise CheckpointError(f"checkpoint {path} holds no model weights")
    dcp.load({MODEL: state}, storage_reader=FsspecReader(path), no_dist=True)
    return state


class _StateHolder:
    def __init__(self, state: dict) -> None:
        self._state = state

    def state_dict(self) -> dict:
        return self._state


def write_model_state(run_dir: str, state: dict[str, torch.Tensor], meta: dict) -> str:
    """Write ``state`` as a weights-only distrec checkpoint under ``run_dir``; returns its path."""
    return save_checkpoint(run_dir, 0, _StateHolder(state), _StateHolder({}), meta=meta, keep=1)


def stack_checkpoint(src: str, out_run_dir: str, fresh_model: nn.Module, method: str,
                     fresh_parts=FRESH_PARTS) -> tuple[str, float]:
    """Stack the model in checkpoint ``src`` onto ``fresh_model``'s 2L layout; write it under
    ``out_run_dir``. Returns (checkpoint path, seconds taken)."""
    start = time.perf_counter()
    old = read_model_state(src)
    fresh = {k: v for k, v in fresh_model.state_dict().items() if not v.is_meta}
    for key, value in old.items():  # tables (meta in the fresh model) are copied, never reset
        if key not in fresh and not BLOCK_KEY.match(key):
            fresh[key] = value
    stacked = stack_state_dict(old, fresh, method, fresh_parts, part_names(fresh_model))
    meta = {"epoch": 0, "batch_in_epoch": 0, "step": 0, "blocks": count_blocks(stacked),
            "stacked_from": src, "stack_method": str(method), "fresh_parts": [str(p) for p in fresh_parts]}
    path = write_model_state(out_run_dir, stacked, meta)
    seconds = time.perf_counter() - start
    log.info("stacked %d -> %d blocks (%s) from %s into %s in %.1f s", count_blocks(old),
             count_blocks(stacked), method, src, path, seconds)
    return path, seconds
