"""`exercises/` mirrors `reference/`: same modules, names and signatures; every stub has a hint and a book section."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

from ftkit.check.impl import public_names, reference_modules

# Modules that hold I/O or tooling rather than learner work have no exercise twin.
NOT_EXERCISES = {"assets", "tokenizer", "fast", "files"}

LEARNER_MODULES = sorted(set(reference_modules()) - NOT_EXERCISES)
SECTION = re.compile(r"§\s?\d+\.\d+|[Ss]ection \d+\.\d+|[Aa]ppendix [A-E]|[Ee]xercise \d\.\d")


def exercise_module(short: str):
    try:
        return importlib.import_module(f"exercises.{short}")
    except ModuleNotFoundError:
        pytest.fail(
            f"exercises/{short}.py is missing: every learner module of reference/ needs a twin"
        )


def own_methods(cls: type) -> dict:
    """Methods a class defines itself: `__init__`, `forward`, dataset dunders and public ones."""
    keep = ("__init__", "forward", "__len__", "__getitem__")
    return {
        name: fn
        for name, fn in vars(cls).items()
        if inspect.isfunction(fn) and (name in keep or not name.startswith("_"))
    }


@pytest.mark.parametrize("short", LEARNER_MODULES)
def test_every_reference_name_has_a_stub_with_the_same_signature(short):
    ref_module = reference_modules()[short]
    ex_module = exercise_module(short)
    for name in public_names(ref_module):
        where = f"exercises/{short}.py: {name}"
        assert hasattr(ex_module, name), f"{where} is missing (reference/{short}.py has it)"
        ref_obj, ex_obj = getattr(ref_module, name), getattr(ex_module, name)
        assert inspect.isclass(ref_obj) == inspect.isclass(ex_obj), f"{where}: class vs function"
        pairs = (
            [
                (f"{name}.{m}", fn, getattr(ex_obj, m, None))
                for m, fn in own_methods(ref_obj).items()
            ]
            if inspect.isclass(ref_obj)
            else [(name, ref_obj, ex_obj)]
        )
        for label, ref_fn, ex_fn in pairs:
            assert ex_fn is not None, f"exercises/{short}.py: {label} is missing"
            assert inspect.signature(ex_fn) == inspect.signature(ref_fn), (
                f"exercises/{short}.py: {label}{inspect.signature(ex_fn)} differs from "
                f"reference {label}{inspect.signature(ref_fn)}"
            )


@pytest.mark.parametrize("short", LEARNER_MODULES)
def test_every_stub_names_a_hint_and_a_book_section(short):
    ex_module = exercise_module(short)
    source = inspect.getsource(ex_module)
    for match in re.finditer(r"raise NotImplementedError\((.*?)\)\n", source, re.S):
        message = match.group(1)
        assert SECTION.search(message), (
            f"exercises/{short}.py: a stub's message lacks a book section: {message}"
        )
        assert len(message) > 30, f"exercises/{short}.py: a stub's hint is too short: {message}"
