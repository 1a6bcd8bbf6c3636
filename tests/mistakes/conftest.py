"""The mistake catalogue's figures as the closing summary line of `pytest -m mistakes`."""

from __future__ import annotations

from tests.mistakes import run


def pytest_terminal_summary(terminalreporter) -> None:
    for line in run.LAST_FIGURES:
        terminalreporter.write_sep("=", f"mistake catalogue: {line}")
