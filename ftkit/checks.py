"""The kit's argument checks, shared by reference/ (`# kit:` lines), the engine and the recipes."""

from __future__ import annotations

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
