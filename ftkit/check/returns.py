"""Swapped return orders: a learner's function returns the book's values in another order.

The book's later code unpacks a function's tuple in the book's order (`train_df,
validation_df, test_df = random_split(...)`, `train_loss, val_loss = evaluate_model(...)`),
so a learner's `random_split` returning (train, test, validation) breaks everything
downstream while each part is right. A failing test only sees wrong sizes or values;
this module names the cause:

1. `recorder` wraps an implementation's function whose book version returns a tuple; each
   call keeps a copy of its arguments (as the book's signature spells them), torch's RNG
   state and what the function returned (the last few calls, on the `Impl`).
2. `swapped_order` (called by `ftkit.teach.explain_failure` for a failing test) runs the
   book's function on the copied arguments with the same RNG state and looks for the
   order in which the learner's elements equal the book's — by value, else by shape alone
   when exactly one order fits — and says so with the book's names for the elements.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import inspect
import io
import itertools
import math
import re
import textwrap
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Exercise key -> the sentence, for every swapped order a failure named (printed above the table).
NAMED: dict[str, str] = {}

KEPT_CALLS = 3  # calls remembered per exercise (a test may call the function a few times)
MAX_COPIED_ELEMENTS = 50_000_000  # larger models are not copied (no diagnosis for them)


@dataclass
class Call:
    """One call of a learner's function: its arguments before the call, and the result."""

    args: tuple
    kwargs: dict
    rng: Any  # torch's RNG state before the call
    result: Any


@functools.cache
def book_return_names(book: Callable) -> tuple[str, ...] | None:
    """The names of the elements the book's function returns as a tuple, or None.

    `return train_df, validation_df, test_df` -> ("train_df", "validation_df", "test_df");
    an element that is an expression is named by the variable it starts from
    (`inputs.to(device)` -> "inputs"), else by its position ("item 2").
    """
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(book))))
    except (OSError, TypeError, SyntaxError):
        return None
    function = tree.body[0] if tree.body else None
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    tuples = [
        node.value
        for node in ast.walk(function)
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple)
    ]
    if not tuples:
        return None
    names = [_base_name(element) for element in tuples[-1].elts]
    if len(set(names)) != len(names) or None in names:
        return tuple(f"item {i + 1}" for i in range(len(names)))
    return tuple(names)  # type: ignore[arg-type]


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _too_big(values: list) -> bool:
    import torch

    total = 0
    for value in values:
        if isinstance(value, torch.nn.Module):
            total += sum(p.numel() for p in value.parameters())
        elif isinstance(value, torch.Tensor):
            total += value.numel()
    return total > MAX_COPIED_ELEMENTS


def _mutable(value: Any) -> bool:
    """Whether a call may change the argument in place: a model, an optimizer, a tensor, a
    frame, a list or dict (a collate that pads the batch's lists in place)."""
    import torch

    kinds = (torch.nn.Module, torch.optim.Optimizer, torch.Tensor, list, tuple, dict, set)
    return isinstance(value, kinds) or _shape(value)[0] == "frame"


def _snapshot(args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """A copy of the arguments a call may change (model and optimizer copied together, so
    the copy's optimizer steps the copy's model); loaders, tokenizers and other values are
    shared. None when they are too big or cannot be copied."""
    values = [*args, *kwargs.values()]
    if _too_big(values):
        return None
    shared: dict[int, Any] = {id(v): v for v in values if not _mutable(v)}
    try:
        return copy.deepcopy((args, kwargs), shared)
    except Exception:  # noqa: BLE001 - no diagnosis for this call
        return None


def recorder(obj: Any, book: Any, calls: deque) -> Any:
    """`obj` unchanged unless the book's `book` returns a tuple; then a wrapper that keeps
    each call (arguments copied before it runs, RNG state, result) in `calls`."""
    if book is None or not inspect.isfunction(inspect.unwrap(book)):
        return obj
    if inspect.isclass(obj) or not callable(obj) or book_return_names(book) is None:
        return obj

    import torch

    @functools.wraps(obj)
    def recorded(*args, **kwargs):
        before = _snapshot(args, kwargs)
        rng = torch.get_rng_state()
        result = obj(*args, **kwargs)
        if before is not None:
            calls.append(Call(before[0], before[1], rng, result))
        return result

    recorded.__ftkit_original__ = getattr(obj, "__ftkit_original__", obj)  # type: ignore[attr-defined]
    return recorded


# --- comparing the learner's elements with the book's -------------------------------------


def _shape(value: Any) -> tuple:
    import torch

    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape))
    if hasattr(value, "shape") and hasattr(value, "columns"):  # a pandas DataFrame
        return ("frame", tuple(value.shape))
    if isinstance(value, (bool, int, float)) or type(value).__module__ == "numpy":
        return ("number",)
    if isinstance(value, (list, tuple)):
        return ("sequence", len(value))
    return (type(value).__name__,)


def _same(a: Any, b: Any) -> bool:
    """Equal values: tensors and numbers within float tolerance, frames row by row."""
    import torch

    if _shape(a) != _shape(b):
        return False
    if isinstance(a, torch.Tensor):
        if a.is_floating_point() or b.is_floating_point():
            return torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-6, equal_nan=True)
        return torch.equal(a, b)
    if _shape(a)[0] == "frame":
        return bool(a.reset_index(drop=True).equals(b.reset_index(drop=True)))
    if _shape(a) == ("number",):
        return math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=1e-6) or (
            math.isnan(float(a)) and math.isnan(float(b))
        )
    if isinstance(a, (list, tuple)):
        return all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an object without a truthful ==
        return a is b


def _orders(yours: tuple, books: tuple, alike: Callable[[Any, Any], bool]) -> list[tuple]:
    """The orders p (other than the book's) in which yours[i] is like books[p[i]] for all i."""
    n = len(books)
    like = [[alike(y, b) for b in books] for y in yours]
    return [
        p
        for p in itertools.permutations(range(n))
        if p != tuple(range(n)) and all(like[i][p[i]] for i in range(n))
    ]


def permutation(yours: Any, books: Any) -> tuple[tuple[int, ...], str] | None:
    """(p, how) when the learner's tuple is the book's reordered: yours[i] is the book's
    element p[i], judged by value ("") or, when exactly one order fits, by shape."""
    if not isinstance(yours, (tuple, list)) or not isinstance(books, (tuple, list)):
        return None
    if len(yours) != len(books) or len(books) < 2:
        return None
    if all(_same(y, b) for y, b in zip(yours, books)):
        return None
    by_value = _orders(tuple(yours), tuple(books), _same)
    if len(by_value) == 1:
        return by_value[0], ""
    if by_value:
        return None
    if all(_shape(y) == _shape(b) for y, b in zip(yours, books)):
        return None  # each element has the book's shape where it is: another mistake
    by_shape = _orders(tuple(yours), tuple(books), lambda y, b: _shape(y) == _shape(b))
    return (by_shape[0], " (judged by their shapes)") if len(by_shape) == 1 else None


def _section(book: Callable) -> str:
    found = re.search(r"§\s?[\d.]*\d", inspect.getdoc(book) or "")
    return f" ({found.group(0)})" if found else ""


def order_text(name: str, book: Callable, order: tuple[int, ...], how: str = "") -> str:
    """ "your `random_split` returns (train_df, test_df, validation_df); the book's returns
    (train_df, validation_df, test_df) — later code unpacks them in the book's order" """
    names = book_return_names(book) or tuple(f"item {i + 1}" for i in range(len(order)))
    yours = ", ".join(names[i] for i in order)
    return (
        f"your `{name}` returns ({yours}){how}; the book's returns ({', '.join(names)}) — "
        f"later code unpacks them in the book's order{_section(book)}"
    )


def book_result(book: Callable, call: Call) -> Any:
    """The book's function on the call's copied arguments, with the call's RNG state (the
    copy is used up: the book's training loop trains it)."""
    import torch

    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        torch.set_rng_state(call.rng)
        return book(*call.args, **call.kwargs)  # its log lines are not the learner's


def swapped_order(impl: Any, exercises: list[str]) -> str | None:
    """The swapped-order sentence for the first of `exercises` whose recorded call returned
    the book's elements in another order, or None."""
    from ftkit.check.impl import exercise_keys, reference_modules

    recorded: dict[str, deque] = getattr(impl, "returned", None) or {}
    for exercise in exercises:
        calls = recorded.get(exercise)
        short, name = exercise_keys().get(exercise, ("", exercise))
        if not calls or not short:
            continue
        book = getattr(reference_modules()[short], name, None)
        for call in reversed(calls):
            try:
                found = permutation(call.result, book_result(book, call))
            except Exception:  # noqa: BLE001 - the book's function on these arguments failed
                found = None
            if found:
                NAMED[exercise] = order_text(name, book, *found)
                return NAMED[exercise]
    return None
