"""The book's package (`llms_from_scratch`, the `book` extra) for the tests that compare with it.

The base install has no book package (it pulls TensorFlow and JupyterLab), so a test
module gets a stand-in: any use of one of its functions or classes skips that one test
with the install command, and every other test of the module still runs.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

INSTALL = "pip install -e '.[book]'"


class Missing:
    """Stands for an absent module or name: attributes are stand-ins, calling one skips the test."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Missing:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Missing(f"{self._name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        pytest.skip(f"compares with the book's package ({self._name}): {INSTALL}")

    def __repr__(self) -> str:
        return f"<{self._name}: not installed>"


def book_module(chapter: str) -> Any:
    """`llms_from_scratch.<chapter>` (e.g. "ch04"), or a stand-in that skips the tests using it."""
    try:
        return importlib.import_module(f"llms_from_scratch.{chapter}")
    except ModuleNotFoundError as err:
        if err.name is None or not err.name.startswith("llms_from_scratch"):
            raise  # the book's package is there but broken: say so
        return Missing(f"llms_from_scratch.{chapter}")
