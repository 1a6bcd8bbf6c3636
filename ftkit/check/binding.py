"""One binding step for every call the kit makes into a learner's function or class.

README promises that the book's parameters are passed by the book's names, mapped by an
adapter's `KEYWORDS`, and that an order difference alone fails nothing. `binder` reads the
book's signature and the learner's: when the learner's parameters are the book's in
another order (or renamed by `KEYWORDS`), each call's arguments are bound to the book's
signature and passed to the learner's function by keyword under the learner's names.
Otherwise the call passes through unchanged (only keyword names are mapped).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)

Binder = Callable[[tuple, dict], tuple[tuple, dict]]


def _signature(obj: Any, *, skip_self: bool = False) -> inspect.Signature | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    if skip_self:
        params = list(sig.parameters.values())[1:]
        sig = sig.replace(parameters=params)
    return sig


def renamed(kwargs: dict, mapping: dict[str, str]) -> dict:
    """Keyword arguments under the implementation's names (`mapping`: book -> theirs)."""
    return {mapping.get(k, k): v for k, v in kwargs.items()}


def binder(obj: Any, book: Any, keywords: dict[str, str] | None) -> Binder | None:
    """A function turning a call's (args, kwargs), written against the book's signature, into
    the arguments for the learner's `obj` (see the module docstring); None when the call can
    pass as written (only keyword names mapped)."""
    keywords = keywords or {}
    is_class = inspect.isclass(obj)
    mine = _signature(obj.__init__, skip_self=True) if is_class else _signature(obj)
    theirs = _signature(book) if book is not None else None

    def keywords_only(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, renamed(kwargs, keywords)

    if mine is None or theirs is None:
        return None
    book_names = [p.name for p in theirs.parameters.values() if p.kind in _POSITIONAL]
    my_params = mine.parameters
    my_positional = [p.name for p in my_params.values() if p.kind in _POSITIONAL]
    wanted = [keywords.get(n, n) for n in book_names]
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in my_params.values())
    by_keyword = all(
        n in my_params and my_params[n].kind != inspect.Parameter.POSITIONAL_ONLY for n in wanted
    )
    if my_positional[: len(wanted)] == wanted or not (by_keyword or takes_any):
        return None  # the book's order (or nothing to bind by): pass as written

    def bind(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        try:
            bound = theirs.bind_partial(*args, **kwargs)
        except TypeError:
            return keywords_only(args, kwargs)
        named: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = theirs.parameters[name].kind
            if kind == inspect.Parameter.VAR_POSITIONAL:
                return keywords_only(args, kwargs)
            if kind == inspect.Parameter.VAR_KEYWORD:
                named.update(value)
            else:
                named[name] = value
        return (), renamed(named, keywords)

    return bind


# --- collaborators: what a learner's function calls, substituted under the learner's name ----


def _global_names(code) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names += _global_names(const)
    return list(dict.fromkeys(names))


def collaborator_name(function: Any, book_name: str, *, hints: tuple[str, ...] = ()) -> str:
    """The global name under which the learner's `function` calls the book's `book_name`
    (e.g. the judge's `query_model`, named `ask_ollama` by a learner): the book's name when
    the function uses it, else the one callable global whose name contains a hint word."""
    from ftkit.check.impl import original

    target = inspect.unwrap(original(function))
    code = getattr(target, "__code__", None)
    if code is None:
        return book_name
    names = _global_names(code)
    if book_name in names:
        return book_name
    found = [
        n
        for n in names
        if callable(target.__globals__.get(n))
        and any(h in n.lower() for h in hints)
        and not inspect.isclass(target.__globals__.get(n))
    ]
    return found[0] if found else book_name


def substitute(monkeypatch: Any, function: Any, book_name: str, fake: Any, **kw: Any) -> str:
    """Put `fake` where the learner's `function` looks up `book_name` (its own module's
    globals, under the name it uses); return that name."""
    from ftkit.check.impl import original

    target = inspect.unwrap(original(function))
    name = collaborator_name(function, book_name, **kw)
    monkeypatch.setitem(target.__globals__, name, fake)
    return name


def default_difference(name: str, ours: Any, book: Any) -> str | None:
    """ "your `generate` defaults to temperature=1.0; the book's to temperature=0.0" when a
    parameter the book gives a default has another default in the implementation."""
    from ftkit.check.impl import original

    target = original(ours)
    mine = (
        _signature(target.__init__, skip_self=True)
        if inspect.isclass(target)
        else _signature(target)
    )
    theirs = _signature(book)
    if mine is None or theirs is None:
        return None
    changed = []
    for param in theirs.parameters.values():
        yours = mine.parameters.get(param.name)
        if yours is None or param.default is inspect.Parameter.empty:
            continue
        if yours.default is inspect.Parameter.empty:
            continue
        try:
            same = bool(yours.default == param.default)
        except Exception:  # noqa: BLE001 - a tensor default, say
            same = yours.default is param.default
        if not same:
            changed.append((param.name, yours.default, param.default))
    if not changed:
        return None
    mine_text = ", ".join(f"{n}={y!r}" for n, y, _ in changed)
    book_text = ", ".join(f"{n}={b!r}" for n, _, b in changed)
    return f"your `{name}` defaults to {mine_text}; the book's to {book_text}"
