"""Model files the recipes saved (`torch.save(model.state_dict(), path)`, book §5.4), read back fast.

The book rebuilds a model with `GPTModel(cfg)` and then `load_state_dict`: every weight
is first filled with random numbers (0.7 s for GPT-2 small on 2 cores) only to be
overwritten. Here the model is built on the meta device (shapes, no memory), given
empty memory, and filled straight from the memory-mapped file: the same model, the
same state_dict, about five times sooner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


def read_state_dict(path: Path, fix: str) -> dict[str, torch.Tensor]:
    """The state_dict saved in `path`; a truncated or foreign file is a clear error ending in `fix`."""
    try:
        # weights_only: a model file is data (tensors), never code to run.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # truncated/corrupt: torch's PytorchStreamReader RuntimeError, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path} cannot be read: the file is truncated or corrupt ({reason}); {fix}"
        ) from err


def load_saved_model(
    build: Callable[[], nn.Module], path: Path, *, fix: str, config_file: Path | None = None
) -> nn.Module:
    """`build()`'s model holding the weights saved in `path`, on the CPU, without a random init first.

    Every parameter and buffer must come from the file (`strict=True`); a model with
    buffers that are not saved (`persistent=False`) is built normally instead.
    `config_file` is named when the weights do not fit the model it describes.
    """
    state = read_state_dict(path, fix)
    with torch.device("meta"):
        model = build()
    if any(module._non_persistent_buffers_set for module in model.modules()):
        model = build()  # such buffers are not in the file: they need their real values
    else:
        model.to_empty(device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # torch lists every mismatch: name the first, count the rest
        where = f"the config in {config_file}" if config_file is not None else "the model"
        problems = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        first = problems[0] if problems else str(err)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"{path} does not fit {where}: {first}{more}") from err
    return model
