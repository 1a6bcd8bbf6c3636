"""Book tests explain their failures: the step that differs, or what a raw torch error means.

A failing book test's message gets one first line from `ftkit.teach.explain_failure`:
for an assertion, the step of the book's listing the implementation first computes
otherwise (attention, LayerNorm, generate); for an error raised from deep inside torch by
the implementation's code, the likely mistake and the implementation's line.
"""

from __future__ import annotations

import pytest

from ftkit.teach import explain_failure


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    try:
        return (yield)
    except Exception as err:
        exercises = [name for mark in item.iter_markers("exercise") for name in mark.args]
        impl = getattr(item, "funcargs", {}).get("impl")
        used = list(getattr(impl, "used", []) or [])
        try:
            first = explain_failure(err, exercises, impl)
        finally:
            if impl is not None and hasattr(impl, "used"):
                impl.used[:] = used  # the explanation's look-ups are not the test's
        if not first:
            raise
        raise AssertionError(f"{first}\n{type(err).__name__}: {err}") from None
