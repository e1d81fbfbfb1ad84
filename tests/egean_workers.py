"""Worker functions the EGEAN tests run in spawned gloo processes (importable by the children)."""

from __future__ import annotations

from omegaconf import OmegaConf


def train_variants(rank: int, cfg_dict: dict, runs: list[dict]) -> list[dict]:
    """Train one config per entry of ``runs`` (dotted-key overrides) in turn; their final metrics."""
    from distrec.methods.egean.recipe import train_worker

    results = []
    for overrides in runs:
        cfg = OmegaConf.create(cfg_dict)
        OmegaConf.set_struct(cfg, True)
        for key, value in overrides.items():
            OmegaConf.update(cfg, key, value, merge=False)
        results.append(train_worker(cfg))
    return results
