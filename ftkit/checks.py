"""The kit's argument checks, shared by reference/ (`# kit:` lines), the engine and the recipes."""

from __future__ import annotations

from typing import Any


def positive_int(value: Any, name: str) -> int:
    """`value` if it is an int >= 1 (a bool is not), else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
