"""Assertions whose failure messages teach: where a tensor differs, and why it should not.

Tests compare an implementation's output with the book's golden values through
these helpers, so a learner reads "targets[1, 2]: expected -100, got 50256 — only
the first end-of-text token of each row stays in the targets" instead of a bare
`assert False`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import torch

MAX_SHOWN = 5
# `ftkit grade`: each helper appends the value it was given, as JSON data, to this file, so a
# process the learner's code never ran in can compare it with the reference's (ftkit/grade/).
RECORD_ENV = "FTKIT_RECORD"
# Values kept of a tensor or list: this many, evenly spaced (plus its shape and dtype).
RECORD_SAMPLE = 2048


def as_data(value) -> object:
    """A value as JSON data (tensors: shape, dtype and an evenly spaced sample), never a pickle."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().reshape(-1)
        if flat.numel() > RECORD_SAMPLE:
            flat = flat[torch.linspace(0, flat.numel() - 1, RECORD_SAMPLE).long()]
        if flat.is_complex():
            flat = torch.view_as_real(flat).reshape(-1)
        sample = flat.double().tolist() if flat.is_floating_point() else flat.tolist()
        return {"tensor": list(value.shape), "dtype": str(value.dtype), "sample": sample}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): as_data(v) for k, v in list(value.items())[:RECORD_SAMPLE]}
    if isinstance(value, Sequence):
        return [as_data(v) for v in list(value)[:RECORD_SAMPLE]]
    try:
        return float(value)  # numpy scalars and the like
    except (TypeError, ValueError):
        return {"type": type(value).__name__}


def _record(kind: str, name: str, actual, **settings) -> None:
    """Append what a helper was given to $FTKIT_RECORD (one JSON line; nothing when unset)."""
    path = os.environ.get(RECORD_ENV)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    try:
        value = as_data(actual)
    except Exception as err:  # noqa: BLE001 - a learner's object may break anything
        value = {"unreadable": type(err).__name__}
    line = {"test": test, "kind": kind, "name": name, "value": value, **settings}
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(line) + "\n")


def _fmt_index(name: str, index: Sequence[int]) -> str:
    return f"{name}[{', '.join(str(int(i)) for i in index)}]"


def _because(why: str | None) -> str:
    return f" — {why}" if why else ""


def assert_tensor_like(
    actual,
    expected: torch.Tensor,
    *,
    name: str = "tensor",
    check_dtype: bool = True,
    check_device: bool = True,
) -> None:
    """Check type, shape, dtype and device first, each with its own message."""
    _record("like", name, actual, check_dtype=check_dtype)
    _check_like(actual, expected, name=name, check_dtype=check_dtype, check_device=check_device)


def _check_like(
    actual, expected: torch.Tensor, *, name: str, check_dtype: bool, check_device: bool
) -> None:
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{name}: expected a torch.Tensor, got {type(actual).__name__}")
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(
            f"{name}: expected shape {list(expected.shape)}, got {list(actual.shape)}"
        )
    if check_dtype and actual.dtype != expected.dtype:
        raise AssertionError(f"{name}: expected dtype {expected.dtype}, got {actual.dtype}")
    if check_device and actual.device.type != expected.device.type:
        raise AssertionError(f"{name}: expected device {expected.device}, got {actual.device}")


def assert_tensor_equal(
    actual,
    expected,
    *,
    name: str = "tensor",
    why: str | None = None,
    atol: float = 0.0,
    rtol: float = 0.0,
    check_dtype: bool = True,
    check_device: bool = True,
    equal_nan: bool = False,
) -> None:
    """Assert `actual` equals `expected` (a tensor or nested list), naming the first differences.

    With `atol`/`rtol` zero the comparison is exact; otherwise `torch.isclose` decides.
    `why` is the book's reason the value must be what it is. A NaN in `actual` fails
    even where `expected` is NaN too (both may come from the same broken code, e.g. a
    causal mask that hides a token from itself), unless `equal_nan=True`.
    """
    _record("tensor", name, actual, atol=atol, rtol=rtol, check_dtype=check_dtype)
    expected = expected if isinstance(expected, torch.Tensor) else torch.tensor(expected)
    if isinstance(actual, torch.Tensor):
        expected = expected.to(actual.device)
    _check_like(actual, expected, name=name, check_dtype=check_dtype, check_device=check_device)
    a, e = actual.detach(), expected.to(actual.dtype)
    if a.is_floating_point() or a.is_complex():
        _assert_no_nan(a, e, name=name, why=why, equal_nan=equal_nan)
    if atol or rtol:
        same = torch.isclose(a.double(), e.double(), atol=atol, rtol=rtol, equal_nan=equal_nan)
    else:
        same = (a == e) | (torch.isnan(a) & torch.isnan(e)) if a.is_floating_point() else a == e
    if bool(same.all()):
        return
    bad = (~same).nonzero().tolist()
    lines = [
        f"{_fmt_index(name, idx)}: expected {e[tuple(idx)].item()!r}, got {a[tuple(idx)].item()!r}"
        for idx in bad[:MAX_SHOWN]
    ]
    more = f"\n  ... and {len(bad) - MAX_SHOWN} more" if len(bad) > MAX_SHOWN else ""
    tol = f" (atol={atol}, rtol={rtol})" if atol or rtol else ""
    raise AssertionError(
        f"{len(bad)} of {same.numel()} values of {name} differ{tol}{_because(why)}\n  "
        + "\n  ".join(lines)
        + more
    )


def _assert_no_nan(
    a: torch.Tensor, e: torch.Tensor, *, name: str, why: str | None, equal_nan: bool
) -> None:
    """Fail on NaN in `a` where `e` has a number (or anywhere, unless `equal_nan`)."""
    bad_nan = torch.isnan(a) & ~torch.isnan(e) if equal_nan else torch.isnan(a)
    if not bool(bad_nan.any()):
        return
    where = bad_nan.nonzero().tolist()
    first = tuple(where[0])
    at = _fmt_index(name, first) if first else name
    more = f" (and {len(where) - 1} more of {a.numel()} values)" if len(where) > 1 else ""
    raise AssertionError(
        f"NaN at {at}{more}: expected {e[first].item()!r}{_because(why)}\n"
        "  NaN comes from 0/0, the square root of a negative number, or a softmax over a row "
        "of -inf only (e.g. a causal mask that hides a token from itself)"
    )


def assert_close(
    actual: float, expected: float, *, name: str, atol: float, why: str | None = None
) -> None:
    """Assert a scalar is within `atol` of the book's printed value."""
    _record("close", name, actual, atol=atol)
    value = float(actual)
    if not abs(value - expected) <= atol:
        raise AssertionError(
            f"{name}: expected {expected} ± {atol}, got {value:.6g}{_because(why)}"
        )


def assert_equal(actual, expected, *, name: str, why: str | None = None) -> None:
    """Assert plain values (ints, strings, lists) are equal, saying what differs."""
    _record("equal", name, actual)
    if actual == expected:
        return
    if isinstance(actual, str) and isinstance(expected, str):
        at = next(
            (i for i, (x, y) in enumerate(zip(actual, expected)) if x != y),
            min(len(actual), len(expected)),
        )
        raise AssertionError(
            f"{name}: strings differ at character {at}{_because(why)}\n"
            f"  expected: {expected[max(0, at - 30) : at + 30]!r}\n"
            f"  got:      {actual[max(0, at - 30) : at + 30]!r}"
        )
    if (
        isinstance(actual, Sequence)
        and isinstance(expected, Sequence)
        and not isinstance(actual, str)
    ):
        if len(actual) != len(expected):
            raise AssertionError(
                f"{name}: expected length {len(expected)}, got {len(actual)}{_because(why)}"
            )
        at = next(i for i, (x, y) in enumerate(zip(actual, expected)) if x != y)
        raise AssertionError(
            f"{name}[{at}]: expected {expected[at]!r}, got {actual[at]!r}{_because(why)}"
        )
    raise AssertionError(f"{name}: expected {expected!r}, got {actual!r}{_because(why)}")


def assert_tokens_equal(actual, expected, tokenizer, *, name: str, why: str | None = None) -> None:
    """Assert two token-id lists are equal; on a difference show the decoded text around the
    first differing character (`expected "task. Write", got "task.Write"`), not token ids."""
    _record("tokens", name, actual)
    actual, expected = [int(t) for t in actual], [int(t) for t in expected]
    if actual == expected:
        return
    try:
        got, want = tokenizer.decode(actual), tokenizer.decode(expected)
    except Exception:  # noqa: BLE001 - ids the tokenizer cannot decode: compare the ids
        assert_equal(actual, expected, name=name, why=why)
        return
    if got == want:
        assert_equal(actual, expected, name=name, why=why)  # same text, other tokens
        return
    at = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
    # Show whole words: the one before the difference and the one after it.
    start = max(0, at - 30)
    start = next((i + 1 for i in range(at - 2, start - 1, -1) if want[i].isspace()), start)

    def to_word_end(text: str) -> int:
        end = at
        while end < len(text) and text[end].isspace():
            end += 1
        while end < len(text) and not text[end].isspace() and end < at + 30:
            end += 1
        return end

    raise AssertionError(
        f"{name} decoded: expected {want[start : to_word_end(want)]!r}, "
        f"got {got[start : to_word_end(got)]!r} "
        f"(first difference at character {at}: "
        f"{want[at : at + 1]!r} expected, {got[at : at + 1]!r} found){_because(why)}"
    )


def plot_text(text: str) -> str:
    """A plot's label or axis title as the book tests compare it: lower case, single spaces.

    The legend's typography ('training loss', 'Training  loss') is the learner's choice; what
    is plotted, against what, and which curve is which, is the book's (§5.1, §6.7).
    """
    return " ".join(str(text).split()).lower()


def plotted_curves(ax) -> dict[str, list[float]]:
    """The curves a matplotlib Axes shows, by their `plot_text` label."""
    return {
        plot_text(line.get_label()): [float(y) for y in line.get_ydata()] for line in ax.get_lines()
    }
