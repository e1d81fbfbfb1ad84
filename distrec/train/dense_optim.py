"""Optimizers for the dense part: a torch optimizer under DDP, or a DeepSpeed ZeRO engine.

Either way the embedding tables keep their fused optimizer (updated inside backward); the
returned ``optimizer`` is what TorchRec's pipeline zero-grads and steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from distrec.errors import ConfigError

TORCH_OPTIMIZERS = {  # dense.optimizer (schema.DenseOptimizer) -> the optimizer
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
}
DEEPSPEED_OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "adagrad": "Adagrad"}


@dataclass
class Optimizers:
    optimizer: torch.optim.Optimizer  # what the pipeline zero-grads and steps
    engine: object | None = None  # the DeepSpeed engine when dense.backend=deepspeed


def build_optimizers(dmp, dense_module: torch.nn.Module, cfg) -> Optimizers:
    if cfg.dense.backend == "ddp":
        return Optimizers(CombinedOptimizer([dmp.fused_optimizer, _torch_dense_optimizer(dmp, cfg.dense)]))
    engine = _deepspeed_engine(dense_module, cfg)
    return Optimizers(CombinedOptimizer([dmp.fused_optimizer]), engine)


def _torch_dense_optimizer(dmp, dense_cfg) -> KeyedOptimizerWrapper:
    cls = TORCH_OPTIMIZERS[dense_cfg.optimizer]
    params = dict(in_backward_optimizer_filter(dmp.named_parameters()))
    return KeyedOptimizerWrapper(
        params, lambda p: cls(p, lr=dense_cfg.lr, weight_decay=dense_cfg.weight_decay)
    )


def deepspeed_config(cfg, world_size: int) -> dict:
    dense = cfg.dense
    if dense.zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"dense.zero_stage: expected 0, 1, 2 or 3, got {dense.zero_stage}")
    params = {"lr": dense.lr, "weight_decay": dense.weight_decay}
    if dense.optimizer in ("adam", "adamw"):
        params["torch_adam"] = True  # DeepSpeed's fused CPU Adam would JIT-compile for ~45 s
    return {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "train_batch_size": cfg.data.batch_size * world_size,
        "gradient_accumulation_steps": 1,
        "optimizer": {"type": DEEPSPEED_OPTIMIZERS[dense.optimizer], "params": params},
        "zero_optimization": {"stage": dense.zero_stage},
        "bf16": {"enabled": dense.precision == "bf16"},
        "gradient_clipping": dense.grad_clip,
        "steps_per_print": 10**9,
    }


def _deepspeed_engine(dense_module: torch.nn.Module, cfg):
    import deepspeed  # imported lazily: it probes accelerators at import time

    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    engine, _, _, _ = deepspeed.initialize(
        model=dense_module,
        model_parameters=[p for p in dense_module.parameters() if p.requires_grad],
        config=deepspeed_config(cfg, world_size),
        dist_init_required=False,
    )
    return engine
