"""The kit's pytest plugin: 'not started' stubs, and the learner's summary at the end of a run.

Loaded by the root conftest.py. Under `--impl exercises` (or any implementation but
the reference) a stub's NotImplementedError is reported as *not started* and a name
the implementation lacks as *not provided* — skips with that reason, never crashes.
At the end of the run a table per book stage and the next exercise are printed
(`ftkit check` shows the same); `--ftkit-report PATH` writes them as JSON.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ftkit.impl import NotProvided
from ftkit.progress import EXTRA_FAILED

NOT_STARTED_PREFIX = "not started: "
NOT_PROVIDED_PREFIX = "not provided: "


# Set when the implementation under test declares BOOK_CODE_ONLY (the book's own code).
BOOK_ONLY_KEY = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftkit")
    group.addoption("--ftkit-report", default=None, help="write per-exercise results as JSON here")
    group.addoption(
        "--ftkit-summary",
        action="store_true",
        default=False,
        help="print the exercise table also for --impl reference",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(ExerciseRecorder(config), "ftkit-exercises")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """For book-code-only implementations, report the kit's extra behaviours as not provided."""
    import importlib

    impl_name = config.getoption("--impl", default="reference")
    try:
        book_only = getattr(importlib.import_module(impl_name), "BOOK_CODE_ONLY", False)
    except ImportError:
        return  # the impl fixture reports the import error where it is used
    if not book_only:
        return
    config.stash[BOOK_ONLY_KEY] = True
    skip = pytest.mark.skip(
        reason=NOT_PROVIDED_PREFIX + f"{impl_name} is the book's code, which lacks this kit extra"
    )
    for item in items:
        if item.get_closest_marker("beyond_book"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    impl = getattr(item, "ftkit_impl", None)
    report.ftkit_used = list(impl.used) if impl is not None else []
    report.ftkit_extra = item.get_closest_marker("beyond_book") is not None
    exercise = item.get_closest_marker("book_exercise")
    # Only a test that ran the implementation's code says anything about its exercise.
    if exercise is not None and exercise.args and report.ftkit_used:
        report.ftkit_used.append(f"Exercise {exercise.args[0]}")
    if call.excinfo is None or impl is None or impl.is_reference:
        return
    err = call.excinfo.value
    if isinstance(err, NotImplementedError):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, NOT_STARTED_PREFIX + str(err))
    elif isinstance(err, NotProvided):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, NOT_PROVIDED_PREFIX + str(err))


def _classify(report: pytest.TestReport) -> tuple[str, str]:
    """(outcome, message) of a test report, telling 'not started' and 'not provided' skips apart."""
    if report.passed:
        return "passed", ""
    if report.failed:
        text = report.longreprtext or ""
        errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
        return "failed", errors[0] if errors else (text.strip().splitlines() or [""])[-1]
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    for prefix, outcome in (
        (NOT_STARTED_PREFIX, "not started"),
        (NOT_PROVIDED_PREFIX, "not provided"),
    ):
        if reason.startswith(prefix):
            return outcome, reason[len(prefix) :]
    return "skipped", reason


class ExerciseRecorder:
    """Collects, per test, the outcome and the exercise names it used; prints the summary."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.outcomes: dict[str, tuple[str, str, list[str]]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        used = getattr(report, "ftkit_used", None)
        if not used or (report.when != "call" and report.passed):
            return
        previous = self.outcomes.get(report.nodeid)
        # A failure in setup or teardown outranks a pass in the call phase.
        if previous is None or previous[0] == "passed":
            outcome, message = _classify(report)
            if outcome == "failed" and getattr(report, "ftkit_extra", False):
                outcome = EXTRA_FAILED  # a kit extra (e.g. a clear error), not the book's behaviour
            self.outcomes[report.nodeid] = (outcome, message, used)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        config = self.config
        impl_name = config.getoption("--impl", default="reference")
        report_path = config.getoption("--ftkit-report")
        if not self.outcomes:
            return
        if impl_name == "reference" and not (report_path or config.getoption("--ftkit-summary")):
            return
        from ftkit.progress import catalog, next_exercise, render_next, render_table, write_report

        exercises = catalog(impl_name)
        for nodeid, (outcome, message, used) in self.outcomes.items():
            for name in used:
                ex = exercises.get(name)
                if ex is None or outcome == "skipped":
                    continue
                ex.outcomes[nodeid] = outcome
                if outcome in ("failed", EXTRA_FAILED) and not ex.message:
                    ex.message = message
        if config.stash.get(BOOK_ONLY_KEY, False):
            # Its beyond-book tests were skipped before running, so nothing recorded which
            # names they use; an exercise with no outcome is one the book's code lacks.
            for ex in exercises.values():
                if not ex.outcomes:
                    ex.outcomes["(beyond the book)"] = "not provided"
        terminalreporter.section(f"ftkit: exercises of {impl_name}")
        terminalreporter.write_line(render_table(exercises))
        terminalreporter.write_line("")
        terminalreporter.write_line(render_next(next_exercise(exercises), exercises))
        if report_path:
            write_report(exercises, Path(report_path), impl_name)
            terminalreporter.write_line(f"\nresults written to {report_path}")
