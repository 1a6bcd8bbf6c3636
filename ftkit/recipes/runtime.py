"""What both recipes (ch. 6 classify, ch. 7 instruct) share: device, model, resume, files.

A recipe reads as setup -> train -> save; the steps it shares live here: picking the
device, building GPT-2 with OpenAI's weights (§5.5) or the random-init `tiny` model,
starting fresh or from the last epoch checkpoint (`ftkit.engine.trainer`), and
writing its model and JSON files atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftkit.engine.trainer import History, load_checkpoint, restore_checkpoint
from ftkit.io.files import atomic_path, write_text_atomic
from reference.model import MODEL_CONFIGS, GPTModel, get_config, preset_size

Say = Callable[[str], None]


def canonical_preset(name: str) -> str:
    """The full preset name (`"355M"` -> `"gpt2-medium (355M)"`, `"tiny"` -> `"tiny"`)."""
    size = preset_size(name)  # raises a clear error for an unknown preset
    return next(full for full in MODEL_CONFIGS if preset_size(full) == size)


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; other names are checked to exist."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu, cuda or mps")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but torch sees no Apple MPS device here")
    return torch.device(device)


def build_model(
    preset: str, *, models_dir: str | os.PathLike | None = None
) -> tuple[nn.Module, bool]:
    """GPT-2 with OpenAI's weights for a GPT-2 preset (§5.5); `tiny` is random-init. Returns (model, pretrained)."""
    name = canonical_preset(preset)
    model = GPTModel(get_config(name))
    if name == "tiny":
        return model, False
    from ftkit.io.gpt2 import download_and_load_gpt2
    from reference.weights import load_weights_into_gpt

    loaded = download_and_load_gpt2(preset_size(name), models_dir=models_dir)
    params = loaded[1] if isinstance(loaded, tuple) else loaded  # (settings, params) as the book
    load_weights_into_gpt(model, params)
    return model, True


@dataclass
class Start:
    """How a run begins: its model, whether it holds GPT-2's weights, and a checkpoint to resume."""

    model: nn.Module
    pretrained: bool
    checkpoint: dict | None = None

    def restore(self, optimizer: torch.optim.Optimizer) -> History | None:
        """Put the checkpoint's model, optimizer and RNG state back; its history (None when fresh)."""
        if self.checkpoint is None:
            return None
        return restore_checkpoint(self.checkpoint, self.model, optimizer)


def start(
    preset: str,
    checkpoint: Path,
    settings: Mapping[str, Any],
    keys: Collection[str],
    *,
    resume: bool,
    models_dir: str | os.PathLike | None,
    say: Say,
) -> Start:
    """The last epoch checkpoint when `resume` finds one (settings checked), else a fresh model."""
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint, settings, keys)
        say(f"Resuming from {checkpoint} (epoch {state['epoch'] + 1} done)")
        # The weights come from the checkpoint: no need to load GPT-2 again.
        model = GPTModel(get_config(canonical_preset(preset)))
        return Start(model, state["settings"].get("pretrained", False), state)
    if resume:
        say(f"No checkpoint at {checkpoint}: starting from the beginning")
    return Start(*build_model(preset, models_dir=models_dir))


def training_path_line(settings: dict) -> str:
    """One line naming the code path and number format a run trains with."""
    if settings["path"] == "exact":
        return "Training path: exact (the book's code, float32)"
    kernels = "fused attention/LayerNorm/GELU, fused AdamW"
    return f"Training path: fast ({kernels}, {settings['precision']}); --exact for the book's code"


def save_state_dict(model: nn.Module, path: Path) -> Path:
    """`torch.save(model.state_dict(), path)` as the book, written whole or not at all."""
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    return path


def write_json(obj: Any, path: Path) -> Path:
    """Write JSON atomically (temp file + os.replace)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False))
