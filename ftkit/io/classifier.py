"""A fine-tuned spam classifier on disk: the book's `review_classifier.pth` plus a JSON of how to use it.

The book saves `torch.save(model.state_dict(), "review_classifier.pth")` (§6.8) and
rebuilds the model by hand; the kit writes beside it what rebuilding and using it
needs (model config, number of classes, padded length, pad token, token position),
both files atomically, so `ftkit classify predict` can load it alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftkit.io.files import atomic_path, write_text_atomic
from reference.collate import PAD_TOKEN_ID

MODEL_FILE = "review_classifier.pth"  # the book's file name (§6.8)
META_FILE = "review_classifier.json"
META_FORMAT = 1


def save_classifier(
    model: nn.Module,
    model_dir: str | Path,
    *,
    max_length: int | None,
    pad_token_id: int = PAD_TOKEN_ID,
    token_position: str = "last",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a classifier's state_dict (book §6.8) and its `review_classifier.json`; returns the folder."""
    from ftkit.data.spam import LABELS

    model_dir = Path(model_dir)
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, dict):
        raise TypeError(
            "save_classifier needs a GPTModel (its `cfg` is written beside the weights)"
        )
    meta = {
        "format": META_FORMAT,
        "model_config": cfg,
        "num_classes": model.out_head.out_features,
        "max_length": max_length,
        "pad_token_id": pad_token_id,
        "token_position": token_position,
        "labels": dict(LABELS),  # the data's label -> class index (book §6.2)
        **(extra or {}),
    }
    with atomic_path(model_dir / MODEL_FILE) as tmp:
        torch.save(model.state_dict(), tmp)
    write_text_atomic(model_dir / META_FILE, json.dumps(meta, indent=2))
    return model_dir


def load_classifier(
    model_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a classifier saved by `save_classifier`; returns `(model, meta)` in eval mode (book §6.8).

    The weights load with `weights_only=True` (no pickled code runs) and `strict=True`.
    """
    from ftkit.io.model_file import load_saved_model
    from reference.classifier import add_classification_head
    from reference.model import GPTModel

    model_dir = Path(model_dir)
    meta_path, weights = model_dir / META_FILE, model_dir / MODEL_FILE
    for path in (meta_path, weights):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: give the --model-dir that `ftkit classify train` wrote"
            )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_path} is not valid JSON: {err}") from err
    missing = [k for k in ("model_config", "num_classes", "max_length") if k not in meta]
    if missing:
        raise ValueError(f"{meta_path} lacks {missing}")

    def build() -> nn.Module:
        model = GPTModel(meta["model_config"])
        add_classification_head(model, num_classes=meta["num_classes"])
        return model

    model = load_saved_model(
        build,
        weights,
        fix="train again with `ftkit classify train --out` this folder",
        config_file=meta_path,
    )
    model.to(device).eval()
    return model, meta
