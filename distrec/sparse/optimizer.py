"""Fused embedding optimizers: the update runs inside the TBE backward, no dense gradient exists."""

from __future__ import annotations

from fbgemm_gpu.split_embedding_configs import EmbOptimType

from distrec.errors import ConfigError

FUSED_OPTIMIZERS = {
    "exact_sgd": EmbOptimType.EXACT_SGD,
    "exact_adagrad": EmbOptimType.EXACT_ADAGRAD,
    "exact_rowwise_adagrad": EmbOptimType.EXACT_ROWWISE_ADAGRAD,
    "adam": EmbOptimType.ADAM,  # GPU only: fbgemm refuses Adam in CPU mode
}


def fused_params(cfg) -> dict:
    if cfg.type not in FUSED_OPTIMIZERS:
        raise ConfigError(
            f"embedding_optimizer.type: unknown '{cfg.type}'; expected one of {sorted(FUSED_OPTIMIZERS)}"
        )
    params = {"optimizer": FUSED_OPTIMIZERS[cfg.type], "learning_rate": cfg.lr}
    if cfg.type != "exact_sgd":
        params["eps"] = cfg.eps
    if cfg.weight_decay:
        params["weight_decay"] = cfg.weight_decay
    return params
