"""The `stage` and `exercise` markers of tests/book: read them, check them, regenerate them.

Every file in tests/book declares its book stage (`pytestmark = pytest.mark.stage("collate")`)
and every test the exercise names it checks (`@pytest.mark.exercise("custom_collate_fn")`).
`ftkit check` selects tests by these markers. The exercise markers are generated, not
written by hand: run the suite against the reference, record which names each test
looked up through the `impl` fixture (`Impl.used`), and write the union per test function:

    python -m ftkit.check.markers --write     # rewrite the exercise markers in tests/book
    python -m ftkit.check.markers --check     # list tests whose markers disagree with use

`tests/kit/test_markers.py` fails when a marker is missing or names something unused.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from ftkit.layout import BOOK_TESTS

# The book stages, in the order a learner meets them; the table and `--stage` use these.
STAGE_ORDER = (
    "model",
    "generation",
    "training",
    "data",
    "collate",
    "classification",
    "instruction SFT",
    "evaluation",
    "LoRA",
    "book exercises",
)
# Tests of the book's end-of-chapter exercises carry `book_exercise`; this stage selects them.
BOOK_EXERCISES_STAGE = "book exercises"
MARK_LINE = "@pytest.mark.exercise("
LINE_LENGTH = 100


def canonical_stage(stage: str) -> str:
    """The stage's name as STAGE_ORDER spells it (case and `-`/space insensitive)."""
    wanted = stage.replace("-", " ").strip().lower()
    for known in STAGE_ORDER:
        if known.lower() == wanted:
            return known
    raise ValueError(f"unknown stage {stage!r}; choose one of {list(STAGE_ORDER)}")


@dataclass
class TestMarks:
    """One test function of tests/book as its source declares it."""

    key: str  # "test_collate.py::test_pads" or "test_x.py::TestClass::test_y"
    node: ast.FunctionDef | ast.AsyncFunctionDef
    stage: str | None
    exercises: tuple[str, ...]
    static_names: tuple[str, ...]  # `impl.NAME` / `impl.of("m").NAME` written in its body
    book_exercise: str | None = None  # "7.2" for `@pytest.mark.book_exercise("7.2")`


def _mark_name(node: ast.expr) -> str | None:
    """`stage` for `pytest.mark.stage(...)`, `weights` for `pytest.mark.weights`."""
    target = node.func if isinstance(node, ast.Call) else node
    if (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Attribute)
        and target.value.attr == "mark"
    ):
        return target.attr
    return None


def _string_args(call: ast.expr) -> tuple[str, ...]:
    if not isinstance(call, ast.Call):
        return ()
    return tuple(a.value for a in call.args if isinstance(a, ast.Constant))


def module_stage(tree: ast.Module) -> str | None:
    """The stage a test module's `pytestmark` declares, if any."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            marks = (
                node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            )
            for mark in marks:
                if _mark_name(mark) == "stage" and _string_args(mark):
                    return _string_args(mark)[0]
    return None


def stage_files(stage: str, folder: Path = BOOK_TESTS) -> list[Path]:
    """The test files of `folder` whose `pytestmark` declares `stage` (read, not imported):
    `--stage` collects only these; the book-exercise stage spans every file."""
    files = sorted(folder.glob("test_*.py"))
    if stage == BOOK_EXERCISES_STAGE:
        return files
    return [f for f in files if module_stage(ast.parse(f.read_text(encoding="utf-8"))) == stage]


def _static_names(func: ast.AST) -> tuple[str, ...]:
    """Names a test body writes as `impl.NAME` or `impl.of("module").NAME` (for tests never run)."""
    from ftkit.check.impl import exercise_key

    found = []
    for node in ast.walk(func):
        if not isinstance(node, ast.Attribute):
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id == "impl" and node.attr != "of":
            found.append(exercise_key(_first_owner(node.attr), node.attr))
        elif (
            isinstance(base, ast.Call)
            and isinstance(base.func, ast.Attribute)
            and base.func.attr == "of"
            and isinstance(base.func.value, ast.Name)
            and base.func.value.id == "impl"
            and _string_args(base)
        ):
            found.append(exercise_key(_string_args(base)[0], node.attr))
    return tuple(sorted(set(found)))


def _first_owner(name: str) -> str:
    from ftkit.check.impl import module_of

    return module_of().get(name, "")


def read_tests(path: Path) -> tuple[ast.Module, list[TestMarks]]:
    """The test functions of one file with their declared stage and exercise markers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    stage = module_stage(tree)
    tests = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                visit(node.body, f"{prefix}{node.name}::")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test"
            ):
                names: list[str] = []
                number = None
                for deco in node.decorator_list:
                    if _mark_name(deco) == "exercise":
                        names.extend(_string_args(deco))
                    elif _mark_name(deco) == "book_exercise" and _string_args(deco):
                        number = _string_args(deco)[0]
                key = f"{path.name}::{prefix}{node.name}"
                static = _static_names(node)
                tests.append(TestMarks(key, node, stage, tuple(names), static, number))

    visit(tree.body, "")
    return tree, tests


def book_test_files() -> list[Path]:
    return sorted(BOOK_TESTS.glob("test_*.py")) if BOOK_TESTS.is_dir() else []


@cache
def declared() -> dict[str, TestMarks]:
    """Every test function of tests/book, by key, as the source declares it."""
    return {t.key: t for path in book_test_files() for t in read_tests(path)[1]}


@cache
def exercise_stages() -> dict[str, str]:
    """Each exercise's stage: the stage of most of the tests naming it (ties: book order)."""
    counts: dict[str, Counter] = {}
    for test in declared().values():
        if test.stage in STAGE_ORDER:
            for name in test.exercises:
                counts.setdefault(name, Counter())[test.stage] += 1
    return {name: min(c, key=lambda s: (-c[s], STAGE_ORDER.index(s))) for name, c in counts.items()}


def book_exercise_names() -> dict[str, set[str]]:
    """`"Exercise 7.2"` -> the exercise names its tests check (from their markers)."""
    found: dict[str, set[str]] = {}
    for test in declared().values():
        if test.book_exercise:
            found.setdefault(f"Exercise {test.book_exercise}", set()).update(test.exercises)
    return found


# ---- what the tests really use: recorded while the suite runs against the reference ----


@dataclass
class Usage:
    """One test function's items in a run: how many, how many ran, names they looked up."""

    declared: set[str] = field(default_factory=set)
    requests_impl: bool = False
    items: int = 0
    ran: int = 0
    used: set[str] = field(default_factory=set)


def function_key(item: pytest.Item) -> str:
    """`test_file.py::Class::test_name` of an item (parameters dropped)."""
    return f"{Path(item.path).name}::{item.nodeid.split('::', 1)[1].split('[')[0]}"


class UsageRecorder:
    """A pytest plugin: per tests/book function, the exercise names its items used."""

    def __init__(self) -> None:
        self.functions: dict[str, Usage] = {}
        self._keys: dict[str, str] = {}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            if Path(item.path).parent.resolve() != BOOK_TESTS.resolve():
                continue
            key = function_key(item)
            self._keys[item.nodeid] = key
            usage = self.functions.setdefault(key, Usage())
            usage.items += 1
            usage.requests_impl |= "impl" in getattr(item, "fixturenames", ())
            for mark in item.iter_markers("exercise"):
                usage.declared.update(mark.args)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        key = self._keys.get(report.nodeid)
        if key is None:
            return
        usage = self.functions[key]
        used = getattr(report, "ftkit_used", ())
        # A test skipped before it looked anything up (e.g. weights not cached) did not run.
        if report.when == "call" and (used or not report.skipped):
            usage.ran += 1
        usage.used.update(used)


def problems(functions: dict[str, Usage]) -> list[str]:
    """Where markers and use disagree: a name used but not declared, declared but never used."""
    from ftkit.check.impl import exercise_keys

    known = set(exercise_keys())
    found = []
    for key, usage in sorted(functions.items()):
        unknown = usage.declared - known
        if unknown:
            found.append(f"{key}: exercise marker names no reference name: {sorted(unknown)}")
        if usage.requests_impl and not usage.declared and not usage.ran:
            found.append(f"{key}: uses `impl` but has no @pytest.mark.exercise(...) marker")
        missing = usage.used - usage.declared
        if missing:
            found.append(f"{key}: looks up {sorted(missing)} but its exercise marker lacks them")
        if usage.items and usage.ran == usage.items:
            unused = usage.declared - usage.used
            if unused:
                found.append(f"{key}: declares {sorted(unused)} but never looks them up")
    return found


def record(extra_args: tuple[str, ...] = ()) -> dict[str, Usage]:
    """Run tests/book against the reference in this process and return what each test used."""
    recorder = UsageRecorder()
    args = [str(BOOK_TESTS), "--impl", "reference", "-q", "-p", "no:cacheprovider", *extra_args]
    code = pytest.main(args, plugins=[recorder])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise SystemExit(f"the reference suite did not pass (exit {int(code)}); fix it first")
    return recorder.functions


# ---- writing the markers ----


def marker_lines(names: list[str], indent: str) -> list[str]:
    """`@pytest.mark.exercise("a", "b")` as ruff format writes it at this indent."""
    args = ", ".join(f'"{n}"' for n in names)
    one = f"{indent}{MARK_LINE}{args})"
    if len(one) <= LINE_LENGTH:
        return [one]
    hugged = f"{indent}    {args}"
    if len(hugged) <= LINE_LENGTH:
        return [f"{indent}{MARK_LINE}", hugged, f"{indent})"]
    return [f"{indent}{MARK_LINE}", *(f'{indent}    "{n}",' for n in names), f"{indent})"]


def rewrite(path: Path, wanted: dict[str, list[str]]) -> bool:
    """Set each listed test's exercise marker (first decorator) in one file; True if changed."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    _, tests = read_tests(path)
    edits = []  # (start, end, new lines), 0-based, end exclusive
    for test in tests:
        if test.key not in wanted:
            continue
        node = test.node
        indent = " " * node.col_offset
        for deco in node.decorator_list:
            if _mark_name(deco) == "exercise":
                # the decorator's lines, including its "@" line
                edits.append((deco.lineno - 1, deco.end_lineno, []))
        first = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
        names = wanted[test.key]
        if names:
            edits.append((first, first, marker_lines(names, indent)))
    for start, end, new in sorted(edits, key=lambda e: (e[0], len(e[2]) == 0), reverse=True):
        lines[start:end] = new
    text = "\n".join(lines) + "\n"
    if text == source:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def generate(functions: dict[str, Usage]) -> dict[str, list[str]]:
    """The exercise names each test function should declare: what it used, else its static guess."""
    wanted = {}
    for key, test in declared().items():
        usage = functions.get(key)
        if usage is not None and usage.ran:
            wanted[key] = sorted(usage.used)
        elif test.static_names and not test.exercises:
            wanted[key] = list(test.static_names)  # never ran here (e.g. needs weights)
    return wanted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftkit.check.markers", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", action="store_true", help="rewrite the exercise markers")
    what.add_argument("--check", action="store_true", help="list disagreements; exit 1 if any")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -m weights)")
    args = parser.parse_args(argv)
    functions = record(tuple(args.pytest_args))
    if args.check:
        found = problems(functions)
        print("\n".join(found) if found else "exercise markers agree with what each test uses")
        return 1 if found else 0
    wanted = generate(functions)
    changed = [p.name for p in book_test_files() if rewrite(p, wanted)]
    never = sorted(k for k, t in declared().items() if k not in wanted and t.exercises)
    print(f"exercise markers rewritten in {len(changed)} file(s): {', '.join(changed) or '-'}")
    if never:
        print("kept as written (did not run here):", ", ".join(never))
    return 0


if __name__ == "__main__":
    sys.exit(main())
