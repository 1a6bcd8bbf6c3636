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

import functools
import importlib
import inspect
import pkgutil
from collections import deque
from functools import cache
from types import ModuleType
from typing import Any

from ftkit.check.binding import binder, renamed
from ftkit.check.returns import KEPT_CALLS, recorder

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
        self._adapted: dict[str, Any] = {}
        # Exercise key -> its last calls, for functions whose book version returns a tuple
        # (`ftkit.check.returns`: a swapped return order is named when a test fails).
        self.returned: dict[str, deque] = {}
        try:
            self._root = importlib.import_module(package)
        except ImportError as err:
            raise ImportError(
                f"--impl {package!r}: cannot import it ({err}). Give 'reference', "
                "'exercises' or an importable package/module with the kit's names."
            ) from err
        # Adapter hooks (both optional): KEYWORDS = {"custom_collate_fn": {"allowed_max_length":
        # "allow_max_length"}} maps the book's parameter names to the implementation's;
        # make_config(book_cfg: dict) turns the book's config dict into the model's config.
        self.keywords: dict[str, dict[str, str]] = dict(getattr(self._root, "KEYWORDS", {}) or {})
        self.config_hook = getattr(self._root, "make_config", None)

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
        """The implementation's `name` of reference module `short` (default: its first owner),
        adapted by the hooks: renamed keywords mapped, the book's config dict converted."""
        first = module_of().get(name)
        short = short or first
        key = exercise_key(short, name) if short else name
        if key not in self._adapted:
            obj = self._find(name, short, first)
            book = getattr(reference_modules()[short], name, None) if short else None
            adapted = adapt(obj, self.keywords.get(key), self._cfg_hook(short, name), book=book)
            if not self.is_reference:
                calls = self.returned.setdefault(key, deque(maxlen=KEPT_CALLS))
                adapted = recorder(adapted, book, calls)
            self._adapted[key] = adapted
        return self._adapted[key]

    def _cfg_hook(self, short: str | None, name: str):
        """make_config for the book's classes built from `cfg` (GPTModel, TransformerBlock, ...)."""
        if self.config_hook is None or short is None:
            return None
        book = getattr(reference_modules()[short], name, None)
        if not inspect.isclass(book):
            return None
        try:
            params = list(inspect.signature(book).parameters)
        except (TypeError, ValueError):
            return None
        return self.config_hook if params[:1] == ["cfg"] else None

    def make_config(self, book_cfg: dict) -> Any:
        """The implementation's config for the book's config dict (its `make_config` hook)."""
        return self.config_hook(dict(book_cfg)) if self.config_hook else book_cfg

    def _find(self, name: str, short: str | None, first: str | None) -> Any:
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
    known = getattr(
        original(obj), "__ftkit_source__", None
    )  # a notebook's class (ftkit.check.learner)
    if known:
        return known
    try:
        target = inspect.unwrap(original(obj))
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


# --- adapter hooks: renamed keywords, config objects ---------------------------------------


def _book_signature(obj: Any, mapping: dict[str, str]) -> inspect.Signature | None:
    """The implementation's signature with its parameters renamed back to the book's names."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    back = {theirs: book for book, theirs in mapping.items()}
    return sig.replace(
        parameters=[p.replace(name=back.get(p.name, p.name)) for p in sig.parameters.values()]
    )


def adapt(
    obj: Any, keywords: dict[str, str] | None, cfg_hook: Any = None, *, book: Any = None
) -> Any:
    """`obj` called through the binding step (`ftkit.check.binding`: the book's parameters by
    the book's names, `keywords`: book -> theirs, order irrelevant) and, for a class built
    from a config, with `cfg_hook(book_cfg)` in place of the book's dict."""
    keywords = keywords or {}
    bind = binder(obj, book, keywords)
    if bind is None and not keywords and cfg_hook is None:
        return obj
    bind = bind or (lambda args, kwargs: (args, renamed(kwargs, keywords)))
    if inspect.isclass(obj):
        init = obj.__init__

        def init_with_hooks(self, *args, **kwargs):
            if cfg_hook is not None and args and isinstance(args[0], dict):
                args = (cfg_hook(dict(args[0])), *args[1:])
            if cfg_hook is not None and isinstance(kwargs.get("cfg"), dict):
                kwargs["cfg"] = cfg_hook(dict(kwargs["cfg"]))
            args, kwargs = bind(args, kwargs)
            init(self, *args, **kwargs)

        namespace = {
            "__init__": init_with_hooks,
            "__module__": obj.__module__,
            "__doc__": obj.__doc__,
        }
        adapted = type(obj.__name__, (obj,), namespace)
        adapted.__qualname__ = obj.__qualname__
    else:

        @functools.wraps(obj)
        def adapted(*args, **kwargs):
            args, kwargs = bind(args, kwargs)
            return obj(*args, **kwargs)

    signature = _book_signature(obj, keywords)
    if signature is not None:
        adapted.__signature__ = signature
    adapted.__ftkit_original__ = obj
    return adapted


def original(obj: Any) -> Any:
    """The implementation's own object behind an adapter hook's wrapper."""
    try:
        own = vars(obj)
    except TypeError:
        return obj
    return own.get("__ftkit_original__", obj)


# --- signatures: the implementation's against the book's -----------------------------------

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _positional(sig: inspect.Signature) -> list[inspect.Parameter]:
    return [p for p in sig.parameters.values() if p.kind in _POSITIONAL]


def signature_difference(ours: Any, book: Any) -> str | None:
    """ "signature differs: yours (...) — the book's (...)" when a parameter the book passes is
    renamed, reordered or missing, or a required one is added; else None.

    Only the book's positional parameters count (the kit's keyword-only exercise options, e.g.
    `style=`, are not the book's); an implementation taking *args/**kwargs cannot be told.
    """
    try:
        mine, theirs = inspect.signature(ours), inspect.signature(book)
    except (TypeError, ValueError):
        return None
    kinds = {p.kind for p in mine.parameters.values()}
    if inspect.Parameter.VAR_POSITIONAL in kinds or inspect.Parameter.VAR_KEYWORD in kinds:
        return None
    book_names = [p.name for p in _positional(theirs)]
    my_params = _positional(mine)
    extra_required = [
        p.name
        for p in [*my_params[len(book_names) :], *mine.parameters.values()]
        if p.default is inspect.Parameter.empty
        and (p.kind == inspect.Parameter.KEYWORD_ONLY or p in my_params[len(book_names) :])
    ]
    if [p.name for p in my_params[: len(book_names)]] == book_names and not extra_required:
        return None
    yours = [p.name for p in my_params] + [
        f"*, {p.name}" for p in mine.parameters.values() if p.kind == inspect.Parameter.KEYWORD_ONLY
    ]
    return f"signature differs: yours ({', '.join(yours)}) — the book's ({', '.join(book_names)})"


def _compare_with_book(package: str, keys: set[str], compare) -> dict[str, str]:
    """Exercise key -> `compare(name, yours, the book's)` where that says something."""
    impl, found = Impl(package), {}
    for key in sorted(keys):
        short, name = exercise_keys().get(key, ("", key))
        if not short:
            continue
        try:
            ours = impl.lookup(name, short)
        except Exception:  # noqa: BLE001 - NotProvided, or a learner's object that breaks lookup
            continue
        difference = compare(name, ours, getattr(reference_modules()[short], name))
        if difference:
            found[key] = difference
    return found


def signature_differences(package: str, keys: set[str]) -> dict[str, str]:
    """Exercise key -> how the implementation's signature differs from the book's (= reference)."""
    return _compare_with_book(package, keys, lambda _, ours, book: signature_difference(ours, book))


def default_differences(package: str, keys: set[str]) -> dict[str, str]:
    """Exercise key -> "your `X` defaults to ...; the book's to ..." (changed defaults)."""
    from ftkit.check.binding import default_difference

    return _compare_with_book(package, keys, default_difference)


# --- which of its own names an implementation's function calls -----------------------------


def _functions(obj: Any) -> list[Any]:
    obj = original(obj)
    if inspect.isclass(obj):
        return [
            inspect.unwrap(v) for v in vars(obj).values() if inspect.isfunction(inspect.unwrap(v))
        ]
    target = inspect.unwrap(obj)
    return [target] if inspect.isfunction(target) else []


def _global_names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _global_names(const)
    return names


def dependencies(package: str, keys: set[str]) -> dict[str, set[str]]:
    """Exercise key -> the other exercises (of this implementation) its code calls by name."""
    impl = Impl(package)
    objects: dict[str, Any] = {}
    for key in keys:
        short, name = exercise_keys().get(key, ("", key))
        try:
            objects[key] = original(impl.lookup(name, short or None))
        except Exception:  # noqa: BLE001
            continue
    by_id = {id(obj): key for key, obj in objects.items()}
    found: dict[str, set[str]] = {}
    for key, obj in objects.items():
        for fn in _functions(obj):
            for name in _global_names(fn.__code__):
                target = fn.__globals__.get(name)
                other = by_id.get(id(target)) if target is not None else None
                if other and other != key:
                    found.setdefault(key, set()).add(other)
    return found
