"""Where the kit's book files are: a source checkout, or the copy an installed wheel carries.

A checkout has `reference/`, `exercises/`, `golden/`, `tests/` (with `tests/book`, the suite
`ftkit check` runs), `benchmarks/results/` and the root `conftest.py` beside `ftkit/`. The
wheel carries the same files inside the kit's own package, under `ftkit/_book/`, with `tests/`
renamed `suite/` (setup.py's build step copies them), so nothing named `tests`, `reference` or
`exercises` lands at the top of site-packages. This module is the one place that decides which
of the two is in use; everything that looks for the suite, the goldens or the benchmarks asks it.

`reference` and `exercises` keep their import names in both: `enable_imports()` (run by
`import ftkit`) maps exactly those two names to the wheel's copy in an installed kit, and to the
checkout's when nothing on sys.path has them (the `ftkit` console script of an editable
install, run from any folder).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
BUNDLE = PACKAGE / "_book"  # the wheel's copy (absent in a checkout)
# What the wheel carries under BUNDLE (setup.py's build step copies by these two tables):
# globs in the checkout, each file at the same path under BUNDLE except a RENAMED first folder.
# Not shipped: tests/kit (the kit's own tests) and tests/mistakes.
SHIPPED = (
    "conftest.py",
    "reference/*.py",
    "exercises/*.py",
    "golden/*.json",
    "tests/*.py",
    "tests/book/*.py",
    "tests/kit/benchmarks/*.py",
    "benchmarks/results/*/*.json",
)
RENAMED = {"tests": "suite"}
BOOK_PACKAGES = ("reference", "exercises")


def is_checkout(root: Path) -> bool:
    """`root` is a source checkout of the kit (the suite and the book's code beside `ftkit/`)."""
    return (root / "tests" / "book").is_dir() and (root / "reference" / "__init__.py").is_file()


INSTALLED = not is_checkout(CHECKOUT) and BUNDLE.is_dir()
ROOT = BUNDLE if INSTALLED else CHECKOUT  # holds conftest.py, golden/, reference/, exercises/
TESTS = ROOT / (RENAMED["tests"] if INSTALLED else "tests")
BOOK_TESTS = TESTS / "book"
BENCHMARKS = TESTS / "kit" / "benchmarks"
GOLDEN = ROOT / "golden"
EXERCISES = ROOT / "exercises"
KIT_RESULTS = ROOT / "benchmarks" / "results"  # the kit's own measured benchmark runs


def where() -> str:
    """One line for `ftkit doctor`: which copy of the book's files this kit uses."""
    if INSTALLED:
        return f"installed package (book files in {BUNDLE})"
    return f"source checkout ({CHECKOUT})"


def install_hint(extra: str = "") -> str:
    """How to install the kit (with an extra) the way this copy was installed."""
    spec = f"[{extra}]" if extra else ""
    if INSTALLED:
        return f"pip install 'llm-finetune-kit{spec}'"
    return f"pip install -e '.{spec}'" if spec else "pip install -e ."


def bench_results_dir() -> Path:
    """Default storage of `ftkit bench`: the checkout's `benchmarks/results`, else the user's.

    An installed kit never writes into site-packages: its runs go to the kit's cache folder
    (`$FTKIT_HOME/benchmarks/results`); its own measured runs stay readable at KIT_RESULTS.
    """
    if not INSTALLED:
        return KIT_RESULTS
    from ftkit.io.assets import cache_dir

    return cache_dir() / "benchmarks" / "results"


class _BookFinder(importlib.abc.MetaPathFinder):
    """Finds `reference` and `exercises` (and their modules) in ROOT: the wheel's copy or the checkout."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in BOOK_PACKAGES:
            return None  # submodules follow the package's __path__, inside ROOT
        return importlib.machinery.PathFinder.find_spec(fullname, [str(ROOT)])


def enable_imports() -> None:
    """`import reference` / `import exercises` load the kit's own copy, however ftkit was started.

    Installed kit: the wheel's copy, first. Checkout (an editable install maps only `ftkit`):
    the checkout's, when nothing on sys.path has them, e.g. the `ftkit` console script run
    from another folder. Idempotent.
    """
    if any(isinstance(f, _BookFinder) for f in sys.meta_path):
        return
    if INSTALLED:
        sys.meta_path.insert(0, _BookFinder())
    else:
        sys.meta_path.append(_BookFinder())
