"""Book tests explain their failures: the step that differs, or what a raw torch error means.

A failing book test's message gets one first line from `ftkit.teach.explain_failure`:
for an assertion, the step of the book's listing the implementation first computes
otherwise (attention, LayerNorm, generate); for an error raised from deep inside torch by
the implementation's code, the likely mistake and the implementation's line.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings

from ftkit.teach import explain_failure

# Property tests stop at their shrunk failing example: hypothesis's "explain" phase traces
# every line run by many more examples (tens of seconds on torch code, past a test's 30 s
# limit: a stub or a learner's bug read "timed out"), to add lines a learner does not need.
settings.register_profile("book", phases=[p for p in Phase if p is not Phase.explain])
settings.load_profile("book")


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
