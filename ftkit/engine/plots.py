"""The book's training plots (§5.1, §6.7) from a `History`, saved as PNG files atomically."""

from __future__ import annotations

from pathlib import Path

import torch

from ftkit.engine.trainer import History
from ftkit.io.files import atomic_path


def save_figure(fig, path: str | Path) -> Path:
    """Write a matplotlib Figure as PNG, whole or not at all; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_losses_png(history: History, path: str | Path) -> Path | None:
    """Chapter 5's loss plot (`plot_losses`, §5.1/§7.6) over epochs and tokens seen; None if empty."""
    from reference.training import plot_losses

    if not history.train_losses:
        return None
    epochs_seen = torch.linspace(0, history.epochs_done, len(history.train_losses))
    fig = plot_losses(
        epochs_seen, history.track_tokens_seen, history.train_losses, history.val_losses
    )
    return save_figure(fig, path)


def plot_values_pngs(history: History, out_dir: str | Path) -> dict[str, Path]:
    """Chapter 6's loss and accuracy plots (`plot_values`, §6.7) as `<label>-plot.png` in `out_dir`."""
    from reference.classifier import plot_values

    plots = {}
    for label, train, val in (
        ("loss", history.train_losses, history.val_losses),
        ("accuracy", history.train_accs, history.val_accs),
    ):
        if train:
            epochs_seen = torch.linspace(0, history.epochs_done, len(train))
            examples_seen = torch.linspace(0, history.examples_seen, len(train))
            fig = plot_values(epochs_seen, examples_seen, train, val, label)
            plots[label] = save_figure(fig, Path(out_dir) / f"{label}-plot.png")
    return plots
