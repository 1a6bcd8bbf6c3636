"""The kit's argument checks, shared by reference/ (`# kit:` lines), the engine and the recipes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def context_length(model: Any) -> int:
    """The number of positions a book `GPTModel` holds (its `pos_emb` rows), the one place it is read."""
    pos_emb = getattr(model, "pos_emb", None)
    weight = getattr(pos_emb, "weight", None)
    if weight is None or weight.dim() != 2:
        raise TypeError(
            f"{type(model).__name__} has no pos_emb embedding to read its context length from; "
            "expected the book's GPTModel (§4.6)"
        )
    return int(weight.shape[0])


def positive_int(value: Any, name: str) -> int:
    """`value` if it is an int >= 1 (a bool is not), else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def fraction(value: Any, name: str) -> float:
    """`value` if it is a number from 0 to 1 (a bool is not), else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return value


def require_columns(df: Any, columns: Sequence[str], where: str) -> None:
    """Raise naming `where` unless `df` is a DataFrame with all of `columns`."""
    if not hasattr(df, "columns"):
        raise TypeError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; has {list(df.columns)}")


def require_text_fields(entry: Any, keys: Sequence[str], where: str) -> None:
    """Raise naming `where` (e.g. "entry 12 of data.json") unless `entry` maps each key to a string."""
    if not isinstance(entry, dict):
        raise ValueError(
            f"{where}: expected an object with keys {list(keys)}, got {type(entry).__name__}"
        )
    for key in keys:
        if key not in entry:
            raise ValueError(f"{where}: missing key {key!r}")
        if not isinstance(entry[key], str):
            raise ValueError(
                f"{where}: key {key!r} must be a string, got {type(entry[key]).__name__}"
            )


def check_generation_args(
    idx: Any,
    max_new_tokens: Any,
    context_size: Any,
    temperature: Any = 0.0,
    top_k: Any = None,
    eos_id: Any = None,
) -> None:
    """Raise a clear error for arguments the book's `generate` (§5.3) cannot use."""
    import torch

    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(
            f"idx must be a (batch, tokens) tensor of token ids, got {shape}; "
            "add the batch dimension with idx.unsqueeze(0) (text_to_token_ids does)"
        )
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise TypeError(f"idx must hold integer token ids, got dtype {idx.dtype}")
    if idx.shape[1] == 0:
        raise ValueError("idx has no tokens: generation needs at least one context token")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 1:
        raise ValueError(f"context_size must be a positive int, got {context_size!r}")
    if not isinstance(temperature, int | float) or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if eos_id is not None and idx.shape[0] != 1:
        raise ValueError(
            f"eos_id stops generation of a single sequence (batch size 1), got a batch of "
            f"{idx.shape[0]}; generate each sequence separately"
        )


def check_top_k(top_k: int, vocab_size: int) -> None:
    """Raise a clear error when top-k sampling (book §5.3) asks for more tokens than there are."""
    if top_k > vocab_size:
        raise ValueError(f"top_k={top_k} exceeds the vocabulary size {vocab_size}")
