"""Resolve the kit's public names in an implementation under test.

An implementation is an importable package with `reference/`'s module layout
(`exercises`, a learner's copy) or a single adapter module exposing the names
flat (`custom_collate_fn`, `GPTModel`, ...). Which reference module a name
belongs to is read off `reference/` itself, so there is no list to keep in step.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import cache
from types import ModuleType
from typing import Any

REFERENCE = "reference"


class NotProvided(AttributeError):
    """The implementation under test does not define a name the kit asks for."""


@cache
def reference_modules() -> dict[str, ModuleType]:
    """All modules of the `reference` package, by short name (e.g. `"collate"`)."""
    package = importlib.import_module(REFERENCE)
    return {
        info.name: importlib.import_module(f"{REFERENCE}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    }


def public_names(module: ModuleType) -> list[str]:
    """Functions and classes a module defines itself (not imports), in source order."""
    names = [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(inspect.unwrap(obj)) or inspect.isclass(obj))  # unwrap: lru_cache
        and getattr(obj, "__module__", None) == module.__name__
    ]
    return names


@cache
def module_of() -> dict[str, str]:
    """Map each public reference name to the short name of the module defining it."""
    owner: dict[str, str] = {}
    for short, module in reference_modules().items():
        for name in public_names(module):
            owner.setdefault(name, short)
    return owner


class Impl:
    """Attribute access to an implementation's version of the kit's names.

    `Impl("exercises").custom_collate_fn` is `exercises.collate.custom_collate_fn`;
    for an adapter module the flat attribute wins. Every name looked up is
    remembered in `used`, so a report can tell which exercises a test touched.
    """

    def __init__(self, package: str):
        self.package = package
        self.used: list[str] = []
        try:
            self._root = importlib.import_module(package)
        except ImportError as err:
            raise ImportError(
                f"--impl {package!r}: cannot import it ({err}). Give 'reference', "
                "'exercises' or an importable package/module with the kit's names."
            ) from err

    @property
    def is_reference(self) -> bool:
        return self.package == REFERENCE

    def module(self, short: str) -> ModuleType | None:
        """The implementation's module `short` (e.g. `"collate"`), or None."""
        try:
            return importlib.import_module(f"{self.package}.{short}")
        except ModuleNotFoundError as err:
            if err.name and (err.name == self.package or err.name.startswith(f"{self.package}.")):
                return None
            raise

    def lookup(self, name: str) -> Any:
        if hasattr(self._root, name):
            return getattr(self._root, name)
        short = module_of().get(name)
        if short is not None:
            module = self.module(short)
            if module is not None and hasattr(module, name):
                return getattr(module, name)
        raise NotProvided(f"{self.package} does not provide {name!r}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self.used:
            self.used.append(name)
        return self.lookup(name)

    def __repr__(self) -> str:
        return f"Impl({self.package!r})"
