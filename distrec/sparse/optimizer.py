"""Fused embedding optimizers: the update runs inside the TBE backward, no dense gradient exists."""

from __future__ import annotations

from fbgemm_gpu.split_embedding_configs import EmbOptimType

FUSED_OPTIMIZERS = {  # embedding_optimizer.type (schema.FusedOptimizer) -> fbgemm's
    "exact_sgd": EmbOptimType.EXACT_SGD,
    "exact_adagrad": EmbOptimType.EXACT_ADAGRAD,
    "exact_rowwise_adagrad": EmbOptimType.EXACT_ROWWISE_ADAGRAD,
    "adam": EmbOptimType.ADAM,  # GPU only: fbgemm refuses Adam in CPU mode
}


def fused_params(cfg) -> dict:
    params = {"optimizer": FUSED_OPTIMIZERS[cfg.type], "learning_rate": cfg.lr}
    if cfg.type != "exact_sgd":
        params["eps"] = cfg.eps
    if cfg.weight_decay:
        params["weight_decay"] = cfg.weight_decay
    return params
