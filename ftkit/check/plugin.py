"""The kit's pytest plugin: select tests by marker, 'not started' stubs, the learner's summary.

Loaded by the root conftest.py. For any implementation but the reference:
- it is imported once before any test; if that fails, one block says where and why, and
  the run stops with exit status 2 (no flood of errors);
- tests/book tests run only where their `exercise` markers name something the
  implementation provides, and `--stage S` keeps one stage's tests (by `stage` marker);
- a stub's NotImplementedError is reported as *not started*, a name the implementation
  lacks as *not provided*, a test past its time limit as *timed out* (pytest-timeout);
- at the very end a table per book stage and the next exercise are printed (`ftkit check`
  shows the same); `--ftkit-report PATH` writes them as JSON (or Gradescope's format).
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import sys
import sysconfig
import tempfile
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftkit.check.impl import NotProvided
from ftkit.check.markers import BOOK_EXERCISES_STAGE, STAGE_ORDER, UsageRecorder, canonical_stage
from ftkit.check.progress import EXTRA_FAILED, NOT_PROVIDED, TIMED_OUT

NOT_STARTED_PREFIX = "not started: "
NOT_PROVIDED_PREFIX = "not provided: "
TIMEOUT_TEXT = "from pytest-timeout"
# Per-test limit for a learner's implementation: ~5x the slowest reference test (6 s, 2 cores).
DEFAULT_TIMEOUT_S = 30.0

# Why the implementation cannot be imported (one block, printed last; exit status 2).
PROBLEM_KEY = pytest.StashKey[str]()
# Exercise keys whose test timed out: their later tests are skipped.
HUNG_KEY = pytest.StashKey[set]()
# Set when the implementation under test declares BOOK_CODE_ONLY (the book's own code).
BOOK_ONLY_KEY = pytest.StashKey[bool]()
# Exercise keys the implementation provides (None: the reference, everything).
PROVIDED_KEY = pytest.StashKey[set]()
# The learner's source files, to point failures at their own lines.
FILES_KEY = pytest.StashKey[set]()
# A learner's script/notebook/folder given as --impl: what was loaded and skipped.
LOADED_KEY = pytest.StashKey[object]()
# Exercise key -> "signature differs: yours (...) — the book's (...)".
SIGNATURES_KEY = pytest.StashKey[dict]()
# Exercise key -> "your `X` defaults to ...; the book's to ..." (a changed default).
DEFAULTS_KEY = pytest.StashKey[dict]()
# Exercise key -> the implementation's other exercises its code calls (for "blocked by").
DEPENDS_KEY = pytest.StashKey[dict]()
# Per tests/book function, the names it used (reference runs; tests/kit/test_markers.py reads it).
USAGE_KEY = pytest.StashKey[UsageRecorder]()
# `ftkit grade` and `ftkit check --sandbox`: each test's id is appended to this file as it
# starts, so the parent can name the test a limit stopped (a message only: no verdict is
# decided from it).
PROGRESS_ENV = "FTKIT_PROGRESS"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftkit")
    group.addoption("--ftkit-report", default=None, help="write per-exercise results here")
    group.addoption(
        "--ftkit-format",
        choices=("json", "gradescope"),
        default="json",
        help="format of --ftkit-report: the kit's JSON (default) or Gradescope's results.json",
    )
    group.addoption(
        "--ftkit-summary",
        action="store_true",
        default=False,
        help="print the exercise table also for --impl reference",
    )
    group.addoption(
        "--ftkit-no-table",
        action="store_true",
        default=False,
        help="leave the exercise table and Next: out (`ftkit check --sandbox` prints its own, "
        "from verified outcomes)",
    )
    group.addoption(
        "--execute",
        action="store_true",
        default=False,
        help="--impl NOTEBOOK.ipynb: run it top to bottom (default: load its definitions only)",
    )
    group.addoption(
        "--book-only",
        action="store_true",
        default=False,
        help="the implementation is the book's code only: the kit's extras are not provided "
        "(as BOOK_CODE_ONLY = True in an adapter)",
    )
    group.addoption(
        "--stage",
        default=None,
        help=f"only the tests of this book stage (stage marker): {', '.join(STAGE_ORDER)}",
    )


def pytest_configure(config: pytest.Config) -> None:
    stage = config.getoption("--stage", default=None)
    if stage:
        try:
            config.option.stage = canonical_stage(stage)
        except ValueError as err:
            raise pytest.UsageError(str(err)) from None
    config.pluginmanager.register(ExerciseRecorder(config), "ftkit-exercises")
    if _impl_name(config) == "reference":
        recorder = UsageRecorder()
        config.stash[USAGE_KEY] = recorder
        config.pluginmanager.register(recorder, "ftkit-usage")


def _impl_name(config: pytest.Config) -> str:
    return config.getoption("--impl", default="reference")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Import the implementation once: on failure, one clear block and exit status 2."""
    config = session.config
    impl_name = _impl_name(config)
    if impl_name == "reference":
        return
    from ftkit.check.returns import NAMED

    NAMED.clear()  # swapped return orders named by this session's failures
    from ftkit.check.impl import (
        default_differences,
        dependencies,
        provided,
        signature_differences,
        source_files,
    )
    from ftkit.check.learner import is_path
    from ftkit.check.loading import import_problem, load_problem

    problem = None
    if is_path(impl_name):
        loaded, problem = load_problem(impl_name, execute=config.getoption("--execute"))
        if loaded is not None:
            config.stash[LOADED_KEY] = loaded
            config.option.impl = impl_name = loaded.name  # tests look the module up by name
    problem = problem or import_problem(impl_name)
    _drop_learner_gc_callbacks()
    if problem is None:
        try:
            config.stash[PROVIDED_KEY] = provided(impl_name)
            config.stash[FILES_KEY] = source_files(impl_name, config.stash[PROVIDED_KEY])
            config.stash[SIGNATURES_KEY] = signature_differences(
                impl_name, config.stash[PROVIDED_KEY]
            )
            config.stash[DEPENDS_KEY] = dependencies(impl_name, config.stash[PROVIDED_KEY])
            config.stash[DEFAULTS_KEY] = default_differences(impl_name, config.stash[PROVIDED_KEY])
        except Exception as err:  # noqa: BLE001 - a learner's module can raise anything
            problem = f"ftkit: looking up names in --impl {impl_name!r} failed: {err!r}"
    if problem is None:
        _work_in_a_temporary_folder(config, config.stash.get(LOADED_KEY, None))
    else:
        config.stash[PROBLEM_KEY] = problem


INTERNAL_ERROR_TEXT = "ftkit: the check stopped early"


@pytest.hookimpl(trylast=True)
def pytest_internalerror(excrepr, excinfo: pytest.ExceptionInfo) -> None:
    """pytest itself failed: after its INTERNALERROR lines (for a bug report), one paragraph
    saying what happened; `ftkit check` ends with exit status 1 (ftkit/check/run.py). The
    learner's code cannot get here: a failure pytest cannot format is a plain report
    (`_plain_report`), and the learner's gc callbacks are removed."""
    err = excinfo.value
    frames = traceback.extract_tb(excinfo.tb)[-2:]
    where = "; ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames)
    print(
        f"{INTERNAL_ERROR_TEXT}: pytest failed while running the tests "
        f"({type(err).__name__}: {err}; at {where}).\n"
        "  The table below covers the tests that ran before. Run the check again; if this "
        "repeats, report it with this message.",
        file=sys.stderr,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> bool | None:
    """An implementation that cannot be imported: collect nothing (no flood of errors)."""
    if PROBLEM_KEY not in session.config.stash:
        return None
    session.items = []
    session.testscollected = 0
    return True


def pytest_sessionfinish(session: pytest.Session) -> None:
    if PROBLEM_KEY in session.config.stash:
        session.exitstatus = 2


class TimedOut(BaseException):
    """A test ran past its limit. A BaseException, so no `except Exception` in the learner's
    code or hypothesis's shrinking (which replays a failing example) can swallow it."""


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings) -> bool | None:
    """pytest-timeout's timer for book tests, raising TimedOut (re-raised each second after)."""
    if (
        not _is_book_test(item)
        or not hasattr(signal, "SIGALRM")
        or threading.current_thread() is not threading.main_thread()
    ):
        return None  # pytest-timeout's own method
    limit = float(settings.timeout)
    fired = []

    def handler(signum, frame):
        # The first alarm always raises; a repeat only while the learner's code still runs
        # (it caught the first with a bare except), never inside pytest's own machinery.
        code = frame.f_code.co_filename if frame is not None else ""
        if fired and ("_pytest" in code or "pluggy" in code):
            return
        fired.append(True)
        raise TimedOut(f"timed out after {limit:g} s — an endless loop? (--timeout to change)")

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, limit, 1.0)
    return True


def pytest_runtest_logstart(nodeid: str, location) -> None:
    path = os.environ.get(PROGRESS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(nodeid + "\n")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip the tests of an exercise that already timed out: each would hang as long."""
    hung = item.config.stash.get(HUNG_KEY, set()) & _declared(item)
    if hung:
        pytest.skip(f"not run: {', '.join(sorted(hung))} timed out in an earlier test")


def _work_in_a_temporary_folder(config: pytest.Config, loaded=None) -> None:
    """Run the learner's code in a temporary folder: files it writes do not land in the kit.
    A learner's script, notebook or folder runs in its working copy (its data files beside it)."""
    previous = os.getcwd()
    workdir = getattr(loaded, "workdir", None)
    if workdir is not None:
        os.chdir(workdir)

        def cleanup() -> None:
            shutil.rmtree(workdir.parent, ignore_errors=True)

    else:
        folder = tempfile.TemporaryDirectory(prefix="ftkit-work-")
        os.chdir(folder.name)
        cleanup = folder.cleanup

    def restore() -> None:
        os.chdir(previous)
        cleanup()

    config.add_cleanup(restore)


def _is_book_test(item: pytest.Item) -> bool:
    return item.get_closest_marker("stage") is not None


def _declared(item: pytest.Item) -> set[str]:
    return {name for mark in item.iter_markers("exercise") for name in mark.args}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tests that say something about this implementation (and this stage)."""
    impl_name = _impl_name(config)
    stage = config.getoption("--stage", default=None)
    provided = config.stash.get(PROVIDED_KEY, None)
    keep, drop = [], []
    for item in items:
        if stage and not _in_stage(item, stage):
            drop.append(item)
        elif provided is not None and _is_book_test(item) and not (_declared(item) & provided):
            drop.append(item)  # checks nothing this implementation provides
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    timeout_plugin = config.pluginmanager.hasplugin("timeout")
    if impl_name != "reference" and timeout_plugin and config.getoption("timeout") is None:
        for item in items:
            if _is_book_test(item) and item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT_S))
    _skip_beyond_book(config, items, impl_name)


def _in_stage(item: pytest.Item, stage: str) -> bool:
    if stage == BOOK_EXERCISES_STAGE:
        return item.get_closest_marker("book_exercise") is not None
    mark = item.get_closest_marker("stage")
    return mark is not None and bool(mark.args) and mark.args[0] == stage


def _skip_beyond_book(config: pytest.Config, items: list[pytest.Item], impl_name: str) -> None:
    """For book-code-only implementations, report the kit's extra behaviours as not provided."""
    import importlib

    if impl_name == "reference":
        return
    try:
        book_only = getattr(importlib.import_module(impl_name), "BOOK_CODE_ONLY", False)
    except Exception:  # noqa: BLE001 - reported once by pytest_sessionstart
        return
    book_only = book_only or config.getoption("--book-only", default=False)
    if not book_only:
        return
    config.stash[BOOK_ONLY_KEY] = True
    skip = pytest.mark.skip(
        reason=NOT_PROVIDED_PREFIX + f"{impl_name} is the book's code, which lacks this kit extra"
    )
    for item in items:
        if item.get_closest_marker("beyond_book"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # The test's time limit measures the learner's code, not pytest writing its report: an alarm
    # raising inside pytest's traceback formatting (in a gc callback run while `ast.parse` builds
    # its tree) makes a nested parse that breaks CPython's AST recursion count (3.11: SystemError
    # "AST constructor recursion depth mismatch", pytest exit 3).
    _drop_learner_gc_callbacks()
    with _timer_paused():
        outcome = yield
    if outcome.exception is not None:  # pytest could not format this failure: say so, plainly
        outcome.force_result(_plain_report(item, call, outcome.exception))
    report = outcome.get_result()
    impl = getattr(item, "ftkit_impl", None)
    report.ftkit_used = list(impl.used) if impl is not None else []
    report.ftkit_declared = sorted(_declared(item))
    report.ftkit_extra = item.get_closest_marker("beyond_book") is not None
    exercise = item.get_closest_marker("book_exercise")
    report.ftkit_book_exercise = (
        f"Exercise {exercise.args[0]}" if exercise is not None and exercise.args else None
    )
    if call.excinfo is None or impl is None or impl.is_reference:
        return
    err = call.excinfo.value
    location = (str(item.path), item.location[1] or 0)
    if isinstance(err, NotImplementedError):
        report.outcome = "skipped"
        report.longrepr = (*location, NOT_STARTED_PREFIX + str(err))
    elif isinstance(err, NotProvided):
        report.outcome = "skipped"
        report.longrepr = (*location, NOT_PROVIDED_PREFIX + str(err))
    elif report.failed:
        blocked = _blocked_value(item.config, err)
        if blocked:
            report.ftkit_blocked_value = blocked
        report.ftkit_timed_out = isinstance(err, TimedOut) or TIMEOUT_TEXT in str(err)
        if report.ftkit_timed_out:
            cancel = getattr(item, "cancel_timeout", None)
            if cancel is not None:
                cancel()
            hung = item.config.stash.setdefault(HUNG_KEY, set())
            hung.update(impl.used or _declared(item))
        report.ftkit_where = _learner_frame(call.excinfo, item.config.stash.get(FILES_KEY, set()))


def _drop_learner_gc_callbacks() -> None:
    """Remove the garbage collector callbacks a learner's code left behind: one that raises runs
    inside every later `ast.parse` (pytest's tracebacks, the summary) and breaks it the same way."""
    installed = {*sysconfig.get_paths().values(), str(Path(__file__).resolve().parents[1])}
    gc.callbacks[:] = [
        callback
        for callback in gc.callbacks
        if not hasattr(callback, "__code__")
        or callback.__code__.co_filename.startswith(tuple(installed))
    ]


@contextlib.contextmanager
def _timer_paused() -> Iterator[None]:
    """Stop the running alarm (a test's time limit) meanwhile; resume it with the time it had left."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return
    left, interval = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        yield
    finally:
        if left > 0 and signal.getitimer(signal.ITIMER_REAL)[0] == 0:
            signal.setitimer(signal.ITIMER_REAL, left, interval)


def _plain_report(
    item: pytest.Item, call: pytest.CallInfo, err: BaseException
) -> pytest.TestReport:
    """The report of a test whose failure pytest could not format (its own error `err`): the
    failure's type and message, and where in the learner's files it happened."""
    if call.excinfo is None:
        lines = [f"E   pytest could not report this test: {type(err).__name__}: {err}"]
    else:
        exc = call.excinfo.value
        lines = [f"E   {line}" for line in traceback.format_exception_only(type(exc), exc)]
        lines.append(f"    (pytest could not show the traceback: {type(err).__name__}: {err})")
        where = _learner_frame(call.excinfo, item.config.stash.get(FILES_KEY, set()))
        if where:
            lines.insert(0, f"{where}")
    return pytest.TestReport(
        item.nodeid,
        item.location,
        dict.fromkeys(item.keywords, 1),
        "failed",
        "\n".join(line.rstrip("\n") for line in lines),
        call.when,
        duration=call.duration,
        start=call.start,
        stop=call.stop,
    )


def _blocked_value(config: pytest.Config, err: BaseException) -> str:
    """ "blocked: needs `x` from nb.ipynb cell 4, skipped: ..." when a test failed because the
    learner's code reads a value whose statement was skipped while loading; else ""."""
    loaded = config.stash.get(LOADED_KEY, None)
    if loaded is None or not isinstance(err, NameError):
        return ""
    name = getattr(err, "name", None)
    for why in loaded.blocked.values():
        if name and f"`{name}`" in why:
            return f"blocked: {why}"
    return ""


def _learner_frame(excinfo: pytest.ExceptionInfo, files: set[str]) -> str:
    """`file:line` of the innermost traceback frame in the learner's own files, or ""."""
    where = ""
    for frame in traceback.extract_tb(excinfo.tb):
        if frame.filename in files:
            where = f"{frame.filename}:{frame.lineno}"
    return where


def _loaded_lines(loaded, *, verbose: bool, shown: int = 6) -> list[str]:
    """What was loaded from a learner's script, notebook or folder: the statements kept because
    definitions need their values, those skipped (with why) and the names they block."""
    if loaded.executed:
        return [f"ftkit: ran {loaded.path.name} top to bottom (--execute)"]
    needed = [line for line in loaded.skipped if " — " in line]  # needed, but not run: why
    unneeded = len(loaded.skipped) - len(needed)
    lines = [
        f"ftkit: loaded {loaded.path.name} statement by statement: its definitions"
        + (f", and {len(loaded.ran)} statements computing values they need" if loaded.ran else "")
        + "."
    ]
    if verbose:
        lines += [f"  kept {line}" for line in loaded.ran]
    if needed:
        lines.append(f"  skipped {len(needed)} statements whose values definitions need:")
        listed = needed if verbose else needed[:shown]
        lines += [f"    {line}" for line in listed]
        if len(listed) < len(needed):
            lines.append(f"    ... and {len(needed) - len(listed)} more (-v lists them)")
    if unneeded:
        lines.append(
            f"  skipped {unneeded} statements no definition needs (downloads, training, prints"
            "; --execute runs a notebook top to bottom):"
        )
        others = [line for line in loaded.skipped if " — " not in line]
        listed = others if verbose else others[:shown]
        lines += [f"    {line}" for line in listed]
        if len(listed) < len(others):
            lines.append(f"    ... and {len(others) - len(listed)} more (-v lists them)")
    for name, why in list(loaded.blocked.items())[: None if verbose else shown]:
        lines.append(f"  blocked: {name} {why}")
    return lines


def _classify(report: pytest.TestReport) -> tuple[str, str]:
    """(outcome, message) of a test report, telling 'not started' and 'not provided' skips apart."""
    if report.passed:
        return "passed", ""
    if report.failed:
        if getattr(report, "ftkit_timed_out", False):
            return TIMED_OUT, "timed out — an endless loop?"
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


def _header(impl_name: str) -> str:
    """What the table is of: the kit's stubs, the reference, or the learner's path/package."""
    names = {"exercises": "the kit's exercise stubs", "reference": "the kit's reference"}
    return names.get(impl_name, impl_name)


class ExerciseRecorder:
    """Collects, per test, the outcome and the exercise names it used; prints the summary last."""

    def __init__(self, config: pytest.Config):
        self.config = config
        # test id -> (outcome, message, exercise names, learner's file:line)
        self.outcomes: dict[str, tuple[str, str, list[str], str]] = {}
        # exercise -> a style note: wording differs from the book's, numbers right (no failure)
        self.styles: dict[str, str] = {}
        self.session: pytest.Session | None = None
        self.report_failed = 0  # 1 when --ftkit-report could not be written
        self.unattributed: set[str] = set()  # failed tests that used no exercise name

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        used = list(getattr(report, "ftkit_used", None) or [])
        if not used and report.skipped and getattr(report, "ftkit_declared", None):
            used = list(report.ftkit_declared)  # skipped before it ran (e.g. book-code-only)
        if report.failed and not used and not getattr(report, "ftkit_extra", False):
            self.unattributed.add(report.nodeid)  # no exercise row shows it: it fails the run
        if not used or (report.when != "call" and report.passed):
            return
        if report.ftkit_book_exercise and report.ftkit_used:
            used.append(report.ftkit_book_exercise)
        for key, value in report.user_properties:
            if key == "ftkit_style":
                self.styles.setdefault(used[0], value)
        previous = self.outcomes.get(report.nodeid)
        # A failure in setup or teardown outranks a pass in the call phase.
        if previous is None or previous[0] == "passed":
            outcome, message = _classify(report)
            message = getattr(report, "ftkit_blocked_value", "") or message
            if outcome == "failed" and getattr(report, "ftkit_extra", False):
                outcome = EXTRA_FAILED  # a kit extra (e.g. a clear error), not the book's behaviour
            where = getattr(report, "ftkit_where", "")
            self.outcomes[report.nodeid] = (outcome, message, used, where)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """After pytest's own summary, so the table and "Next:" are the last lines printed."""
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and PROBLEM_KEY in config.stash:
            reporter.write_line("")
            reporter.write_line(config.stash[PROBLEM_KEY])
            return
        if reporter is None or not self._wanted():
            return
        try:
            status = self._summary(reporter)
        except Exception as err:  # noqa: BLE001 - the learner's code must never crash the summary
            reporter.write_line(f"ftkit: could not build the summary ({type(err).__name__}: {err})")
            status = 1 if config.getoption("--ftkit-report") else None  # no report written
        session = self.session
        # The table decides the exit status (progress.exit_status); pytest's own 2-5 stand.
        if status is not None and session is not None and session.exitstatus in (0, 1):
            session.exitstatus = max(status, self.report_failed, int(bool(self.unattributed)))

    def _wanted(self) -> bool:
        config = self.config
        if not self.outcomes and PROVIDED_KEY not in config.stash:
            return False
        if _impl_name(config) == "reference":
            return bool(config.getoption("--ftkit-report") or config.getoption("--ftkit-summary"))
        return True

    def _summary(self, reporter) -> int:
        """Print the table and "Next:", write the report; the exit status the table gives."""
        from ftkit.check.progress import (
            catalog,
            exit_status,
            mark_blocked,
            next_exercise,
            render_next,
            render_table,
            write_gradescope,
            write_report,
        )

        config = self.config
        impl_name = _impl_name(config)
        exercises = catalog(
            impl_name,
            stage=config.getoption("--stage", default=None),
            provided=config.stash.get(PROVIDED_KEY, None),
        )
        for nodeid, (outcome, message, used, where) in self.outcomes.items():
            for name in used:
                ex = exercises.get(name)
                if ex is None or outcome == "skipped":
                    continue
                ex.outcomes[nodeid] = outcome
                if outcome in ("failed", EXTRA_FAILED, TIMED_OUT) and not ex.message:
                    ex.message, ex.where = message, where
        for key, difference in config.stash.get(SIGNATURES_KEY, {}).items():
            if key in exercises:
                exercises[key].signature = difference
        for key, difference in config.stash.get(DEFAULTS_KEY, {}).items():
            ex = exercises.get(key)
            if ex is not None and ex.message and not ex.message.startswith("blocked"):
                ex.message = f"{ex.message} — {difference}"  # the likely cause, named
        mark_blocked(exercises, config.stash.get(DEPENDS_KEY, {}))
        loaded = config.stash.get(LOADED_KEY, None)
        for ex in exercises.values():  # its code reads a value skipped while loading, or
            if ex.blocked_by:  # calls a name its chapter-6 file shadows
                continue
            if ex.message.startswith("blocked: needs "):
                ex.blocked_by = [ex.message[len("blocked: ") :]]
            elif loaded is not None and ex.status == "failing" and ex.name in loaded.blocked:
                ex.blocked_by = [loaded.blocked[ex.name]]
        if config.stash.get(BOOK_ONLY_KEY, False):
            # Its beyond-book tests were skipped before they ran, so nothing recorded what
            # they use: an exercise left with no outcome is one only the kit's extras check.
            for ex in exercises.values():
                if not ex.outcomes:
                    ex.outcomes["(beyond the book)"] = NOT_PROVIDED
        report_path = config.getoption("--ftkit-report")
        if report_path:
            try:
                if config.getoption("--ftkit-format") == "gradescope":
                    write_gradescope(exercises, Path(report_path))
                else:
                    write_report(exercises, Path(report_path), impl_name)
                if not config.getoption("--ftkit-no-table"):  # a sandbox's report: internal
                    reporter.write_line(f"results written to {report_path}")
            except OSError as err:
                self.report_failed = 1
                reporter.write_line(
                    f"ftkit: could not write the report {report_path}: {err.strerror or err}",
                    red=True,
                )
        loaded = config.stash.get(LOADED_KEY, None)
        if loaded is not None:
            impl_name = str(loaded.path)
            for line in _loaded_lines(loaded, verbose=config.getoption("verbose") > 0):
                reporter.write_line(line)
        for name, note in self.styles.items():
            reporter.write_line(f"ftkit: style note, {name}: {note}")
        for key, difference in config.stash.get(SIGNATURES_KEY, {}).items():
            reporter.write_line(f"ftkit: {key}: {difference}")
        for key, difference in config.stash.get(DEFAULTS_KEY, {}).items():
            reporter.write_line(f"ftkit: {key}: {difference}")
        from ftkit.check.returns import NAMED

        for key, order in NAMED.items():
            reporter.write_line(f"ftkit: {key}: {order}")
        if config.getoption("--ftkit-no-table"):
            return exit_status(exercises)
        reporter.write_sep("=", f"ftkit check: {_header(impl_name)}")
        reporter.write_line(render_table(exercises))
        reporter.write_line("")
        reporter.write_line(render_next(next_exercise(exercises), exercises))
        return exit_status(exercises)
