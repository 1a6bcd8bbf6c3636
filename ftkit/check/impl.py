"""Resolve the book's names in an implementation under test.

An implementation is an importable package with `reference/`'s module layout
(`exercises`, a learner's copy) or a single adapter module exposing the names
flat (`custom_collate_fn`, `GPTModel`, ...). Which reference module a name
belongs to is read off `reference/` itself, so there is no list to keep in step.

The book reuses some names across chapters (ch. 5 and ch. 6 both define
`calc_loss_batch`, `calc_loss_loader`, `evaluate_model`); each keeps the book's
name in its own module. `impl.calc_loss_batch` is the first one in book order
(ch. 5, `training`); `impl.of("classifier").calc_loss_batch` is ch. 6's. A flat
adapter exposes the later one chapter-qualified: `calc_loss_batch_classifier`.
Exercise keys name them in reports: `calc_loss_batch`, `classifier.calc_loss_batch`.
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


def book_order() -> list[str]:
    """Reference modules in the order a reader of the book meets them (`reference.BOOK_ORDER`)."""
    import reference

    known = reference_modules()
    ordered = [m for m in getattr(reference, "BOOK_ORDER", ()) if m in known]
    return ordered + sorted(set(known) - set(ordered))


@cache
def owners() -> dict[str, tuple[str, ...]]:
    """Map each public reference name to the modules defining it, in book order."""
    found: dict[str, list[str]] = {}
    modules = reference_modules()
    for short in book_order():
        for name in public_names(modules[short]):
            found.setdefault(name, []).append(short)
    return {name: tuple(mods) for name, mods in found.items()}


def module_of() -> dict[str, str]:
    """Map each public reference name to the first module (book order) defining it."""
    return {name: mods[0] for name, mods in owners().items()}


def exercise_key(module: str, name: str) -> str:
    """The exercise's name in reports: `name`, or `module.name` for a later chapter's reuse."""
    mods = owners().get(name, ())
    return name if not mods or mods[0] == module else f"{module}.{name}"


def split_key(key: str) -> tuple[str, str]:
    """`(module, name)` of an exercise key (inverse of `exercise_key`)."""
    if "." in key:
        module, name = key.split(".", 1)
        return module, name
    return module_of().get(key, ""), key


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

    def lookup(self, name: str, short: str | None = None) -> Any:
        """The implementation's `name` of reference module `short` (default: its first owner)."""
        first = module_of().get(name)
        short = short or first
        if short is not None and short != first:
            # A later chapter's reuse of a name: chapter-qualified in a flat adapter.
            qualified = f"{name}_{short}"
            if hasattr(self._root, qualified):
                return getattr(self._root, qualified)
        module = self.module(short) if short is not None else None
        if module is not None and hasattr(module, name):
            return getattr(module, name)
        if short == first and hasattr(self._root, name):
            return getattr(self._root, name)
        where = f" (the book's {short} version)" if short != first else ""
        raise NotProvided(f"{self.package} does not provide {name!r}{where}")

    def record(self, short: str | None, name: str) -> None:
        if name not in owners():
            return  # not a book name (e.g. hypothesis probing attributes of its arguments)
        key = exercise_key(short, name) if short else name
        if key not in self.used:
            self.used.append(key)

    def of(self, short: str) -> ModuleView:
        """Names of one reference module: `impl.of("classifier").calc_loss_batch` (ch. 6's)."""
        if short not in reference_modules():
            raise ValueError(f"no reference module {short!r}; known: {sorted(reference_modules())}")
        return ModuleView(self, short)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        self.record(module_of().get(name), name)
        return self.lookup(name)

    def __repr__(self) -> str:
        return f"Impl({self.package!r})"


class ModuleView:
    """`impl.of("classifier")`: attribute access to one reference module's names."""

    def __init__(self, impl: Impl, short: str):
        self._impl, self._short = impl, short

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        self._impl.record(self._short, name)
        return self._impl.lookup(name, self._short)


def exercise_keys() -> dict[str, tuple[str, str]]:
    """Every exercise key of `reference/` -> `(module, name)`, in book order."""
    return {
        exercise_key(short, name): (short, name)
        for name, mods in owners().items()
        for short in mods
    }


def provided(package: str) -> set[str]:
    """Exercise keys the implementation `package` defines (a stub counts: it is the learner's)."""
    impl = Impl(package)
    found = set()
    for key, (short, name) in exercise_keys().items():
        try:
            impl.lookup(name, short)
        except NotProvided:
            continue
        found.add(key)
    return found


def source_of(obj: Any) -> tuple[str, int] | None:
    """`(file, line)` where an implementation's object is defined, or None (built-ins, C code)."""
    try:
        target = inspect.unwrap(obj)
        path = inspect.getsourcefile(target)
        line = inspect.getsourcelines(target)[1]
    except (TypeError, OSError):
        return None
    return (path, line) if path else None


def source_files(package: str, keys: set[str]) -> set[str]:
    """The files defining the implementation's objects for these exercise keys."""
    impl, files = Impl(package), set()
    for key in keys:
        short, name = exercise_keys().get(key, ("", key))
        try:
            where = source_of(impl.lookup(name, short or None))
        except Exception:  # noqa: BLE001 - a learner's object may break introspection
            continue
        if where:
            files.add(where[0])
    return files
