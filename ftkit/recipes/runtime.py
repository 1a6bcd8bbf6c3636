"""What both recipes (ch. 6 classify, ch. 7 instruct) share: device, model, resume, files.

A recipe reads as setup -> train -> save; the steps it shares live here: picking the
device, building GPT-2 with OpenAI's weights (§5.5) or the random-init `tiny` model,
starting fresh or from the last epoch checkpoint (`ftkit.engine.trainer`), and
writing its model and JSON files atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftkit.engine.precision import resolve_device  # noqa: F401 - the recipes' device
from ftkit.engine.trainer import (
    History,
    Steps,
    explain_interrupt,
    fit,
    load_checkpoint,
    restore_checkpoint,
)
from ftkit.io.files import atomic_path, write_text_atomic
from ftkit.presets import canonical_preset, get_config, preset_size
from ftkit.recipes.config import RUNS_DIR
from reference.model import GPTModel

Say = Callable[[str], None]


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


def ensure_weights(
    preset: str,
    *,
    models_dir: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> None:
    """Before any work (no run folder, no data): the GPT-2 weights a fresh run loads are here.

    Cached ones are found, missing ones fetched now; `tiny` needs none, nor does a run that
    will resume from `checkpoint`. When they cannot be had (offline, no network) the
    AssetError also offers `--model tiny`.
    """
    name = canonical_preset(preset)
    if name == "tiny" or (checkpoint is not None and Path(checkpoint).exists()):
        return
    from ftkit.io.assets import AssetError
    from ftkit.io.gpt2 import fetch_gpt2, pick_source

    size = preset_size(name)
    try:
        fetch_gpt2(size, models_dir, source=pick_source(size, models_dir))
    except AssetError as err:
        raise AssetError(
            f"{err}\n  Or run without GPT-2's weights: --model tiny (random init, a quick "
            "check that the pipeline runs; nothing was written)"
        ) from None


class OutDirError(ValueError):
    """`--out` cannot hold the run's files (a file, under a file, not writable): exit 2."""


def run_dir(recipe: str, preset: str, out: str | os.PathLike | None = None) -> Path:
    """`out`, or the run's own folder `runs/<recipe>-<model>` (e.g. `runs/classify-gpt2-small`).

    A named folder, not the current one: a run writes hundreds of MB of checkpoints.
    """
    if out is not None:
        return Path(out)
    return RUNS_DIR / f"{recipe}-{canonical_preset(preset).split(' (')[0]}"


def check_out_dir(out: str | os.PathLike) -> Path:
    """Make sure `out` is, or can become, a writable folder, before any work; else `OutDirError`.

    Checked with `os.access` and then by creating (and removing) a temporary file, so
    a read-only mount fails here too, for root as well (root passes `os.access`).
    The folder is created when missing.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutDirError(f"--out {out} is a file, not a folder; give a folder path")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutDirError(f"--out {out} cannot be created: {blocker} is a file, not a folder")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutDirError(f"--out {out}: {existing} is not writable; choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise OutDirError(f"--out {out} is not writable ({err.strerror or err})") from err
    return out


def resume_state(
    checkpoint: Path,
    settings: Mapping[str, Any],
    keys: Collection[str],
    *,
    resume: bool,
    say: Say,
) -> dict | None:
    """The last epoch checkpoint when `resume` and one exists (settings checked), else None.

    Writes nothing, so a recipe calls it before touching its folder: a refused resume
    (other settings) leaves every file of the run as it was.
    """
    if not checkpoint.exists():
        return None
    if not resume:
        say(f"--restart: starting over; {checkpoint} will be overwritten after epoch 1")
        return None
    state = load_checkpoint(checkpoint, settings, keys)
    say(f"Resuming from {checkpoint} (epoch {state['epoch'] + 1} done)")
    return state


def setup_interrupt_message(checkpoint: Path, *, resume: bool) -> str:
    """After Ctrl-C outside the epochs (setup, final evaluation, saving): what a rerun does."""
    if not checkpoint.exists():
        return (
            "no epoch checkpoint is saved yet; rerunning the same command starts training "
            "from the beginning"
        )
    if not resume:
        return (
            f"rerunning the same command (with --restart) starts over; without --restart it "
            f"continues after the last epoch saved in {checkpoint}"
        )
    return (
        f"the last finished epoch is saved in {checkpoint}; rerunning the same command "
        "continues from it (--restart starts over)"
    )


@dataclass
class Start:
    """How a run begins: its model, whether it holds GPT-2's weights, and a checkpoint to resume."""

    model: nn.Module
    pretrained: bool
    checkpoint: dict | None = None

    def restore(
        self, optimizer: torch.optim.Optimizer, model: nn.Module | None = None, dist=None
    ) -> History | None:
        """Put the checkpoint's model, optimizer and RNG state back; its history (None when fresh).

        `model` is the model being trained when it is not `self.model` (a DDP/FSDP-wrapped one, `dist`).
        """
        if self.checkpoint is None:
            return None
        return restore_checkpoint(self.checkpoint, model or self.model, optimizer, dist)


def start(preset: str, state: dict | None, *, models_dir: str | os.PathLike | None = None) -> Start:
    """The model to train: from the checkpoint `state` (see `resume_state`), else fresh GPT-2 or tiny."""
    if state is not None:
        # The weights come from the checkpoint: no need to load GPT-2 again.
        model = GPTModel(get_config(canonical_preset(preset)))
        return Start(model, state["settings"].get("pretrained", False), state)
    return Start(*build_model(preset, models_dir=models_dir))


def save_state_dict(model: nn.Module, path: Path) -> Path:
    """`torch.save(model.state_dict(), path)` as the book, written whole or not at all."""
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    return path


def write_json(obj: Any, path: Path) -> Path:
    """Write JSON atomically (temp file + os.replace)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False))


def train_epochs(
    model: nn.Module,
    loaders: tuple,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    steps: Steps,
    config: Any,
    history: History,
    checkpoint: Path,
    settings: dict,
    say: Callable[[str], None],
    dist: Any,
    backend: Any,
) -> tuple[nn.Module | None, History]:
    """Both recipes' training step (§6.7, §7.6): the engine's `fit` with the run's settings.

    Ctrl-C says what is saved and what a rerun does. Returns the plain model to save —
    None on the ranks after 0 of a data-parallel run, which stop there — and the history.
    """
    with explain_interrupt(history, config.epochs, checkpoint, restart=not config.resume):
        history = fit(
            model,
            *loaders,
            optimizer,
            device,
            steps=steps,
            num_epochs=config.epochs,
            eval_freq=config.eval_freq,
            eval_iter=config.eval_iter,
            history=history,
            checkpoint=checkpoint,
            settings=settings,
            progress=config.progress,
            say=say,
            dist=dist,
            backend=backend,
        )
    return dist.unwrap(model), history  # the plain model, on rank 0 only: it alone goes on
