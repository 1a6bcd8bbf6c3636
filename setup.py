"""The wheel's build step: the book's files ride inside the kit's package, under ftkit/_book.

`reference/`, `exercises/`, `golden/`, the suite `ftkit check` runs (`tests/book` and its
helpers), the benchmarks `ftkit bench` runs, the kit's measured benchmark results and the root
`conftest.py` stay where a reader of the repository expects them; the wheel carries copies
under `ftkit/_book/` (ftkit/layout.py's SHIPPED, `tests/` renamed `suite/`), so nothing named
`tests`, `reference` or `exercises` lands at the top of site-packages. pytest's settings travel
as `ftkit/_book/pyproject.toml` (only `[tool.pytest.ini_options]`, copied from ours). An
editable install needs none of this: ftkit/layout.py finds the checkout itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _layout():
    """ftkit/layout.py by its path (the tables of what ships; no need to import the kit)."""
    spec = importlib.util.spec_from_file_location("_ftkit_layout", HERE / "ftkit" / "layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_settings(pyproject: str) -> str:
    """The `[tool.pytest.ini_options]` table of a pyproject.toml, verbatim."""
    start = pyproject.index("[tool.pytest.ini_options]")
    end = pyproject.find("\n[", start + 1)
    return pyproject[start : end if end != -1 else None].rstrip() + "\n"


def book_files() -> dict[Path, str]:
    """Checkout file -> its path inside the wheel."""
    layout = _layout()
    files = {}
    for pattern in layout.SHIPPED:
        for path in sorted(HERE.glob(pattern)):
            first, *rest = path.relative_to(HERE).parts
            files[path] = "/".join(["ftkit", "_book", layout.RENAMED.get(first, first), *rest])
    return files


class build_py_with_book(build_py):  # noqa: N801  (setuptools' command naming)
    """build_py, then copy the book's files into the build under ftkit/_book."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout in place
        target = Path(self.build_lib)
        for source, inside in book_files().items():
            dest = target / inside
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(source), str(dest))
        settings = target / "ftkit" / "_book" / "pyproject.toml"
        settings.write_text(
            pytest_settings((HERE / "pyproject.toml").read_text(encoding="utf-8")),
            encoding="utf-8",
        )


if __name__ == "__main__":  # how setuptools runs it; importing it (tests) builds nothing
    setup(cmdclass={"build_py": build_py_with_book})
