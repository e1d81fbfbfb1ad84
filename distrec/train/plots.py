"""Training curves as a PNG next to the run's metrics: train loss and every eval metric by step."""

from __future__ import annotations

import io
import json
import posixpath

from distrec.storage import filesystem


def plot_training_curves(run_dir: str, s3_endpoint_url: str | None = None) -> str | None:
    """Write ``<run_dir>/curves.png`` from ``metrics.jsonl``; returns its path (None: no records)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fs, path = filesystem(run_dir, s3_endpoint_url)
    with fs.open(posixpath.join(path, "metrics.jsonl"), "r") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    train = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]
    evals = [r for r in records if "auc" in r or "logloss" in r]
    names = [k for k in ("auc", "gauc", "logloss") if any(k in r for r in evals)]
    if not train and not names:
        return None
    fig, axes = plt.subplots(1, 1 + len(names), figsize=(4 * (1 + len(names)), 3.2), squeeze=False)
    axes = axes[0]
    if train:
        axes[0].plot(*zip(*train), lw=1)
    axes[0].set(title="train loss", xlabel="step")
    for ax, name in zip(axes[1:], names):
        points = [(r["step"], r[name]) for r in evals if name in r and r[name] == r[name]]
        if points:
            ax.plot(*zip(*points), marker="o")
        ax.set(title=f"valid {name}", xlabel="step")
    fig.tight_layout()
    target = posixpath.join(run_dir, "curves.png")
    with fs.open(posixpath.join(path, "curves.png"), "wb") as fh:  # small and written once: no partial state to protect
        fh.write(figure_png(fig))
    return target


def figure_png(fig, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed), for an atomic write by the caller."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()
