"""distrec: distributed training of large recommendation models (Ray Train + TorchRec + DeepSpeed)."""

__version__ = "0.1.0"
