"""The learner's progress: which exercises are solved, failing or not started, and what to do next.

An *exercise* is one public function or class of `reference/` that has a stub in
`exercises/`. A test counts towards every exercise name it looked up through the
`impl` fixture; an exercise's status comes from the outcomes of those tests.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ftkit.check.impl import (
    Impl,
    book_order,
    exercise_key,
    public_names,
    reference_modules,
    source_of,
)
from ftkit.check.markers import (
    BOOK_EXERCISES_STAGE,
    STAGE_ORDER,
    book_exercise_names,
    canonical_stage,
    exercise_stages,
)

SOLVED, FAILING, NOT_STARTED, NOT_PROVIDED, PARTIAL = (
    "solved",
    "failing",
    "not started",
    "not provided",
    "in progress",
)
# A name whose parameters are not the book's (renamed, reordered, missing): fix that first.
SIGNATURE_DIFFERS = "signature differs"
# A failing exercise whose code calls another of the implementation's failing exercises.
BLOCKED = "blocked"
# Outcome of a failed `beyond_book` test: reported, but the book's behaviour is what solves an exercise.
EXTRA_FAILED = "failed (kit extra)"
# Outcome of a test stopped by its time limit (pytest-timeout): counts as failing.
TIMED_OUT = "timed out"
SECTION = re.compile(r"(?:§\s?\d+\.\d+|[Ss]ection \d+\.\d+|[Aa]ppendix [A-E]|[Ee]xercise \d\.\d)")


# The book's end-of-chapter exercises; tests carry `@pytest.mark.book_exercise("7.2")`.
BOOK_EXERCISES = {
    "6.1": "Pad the spam datasets to the full context (1024) instead of the longest text (book §6.9, Exercise 6.1)",
    "6.2": "Fine-tune the whole model instead of the last block only (book §6.9, Exercise 6.2)",
    "6.3": "Classify on the first token's output instead of the last (book §6.9, Exercise 6.3)",
    "7.1": "Use the Phi-3 prompt style (<|user|> / <|assistant|>) (book §7.9, Exercise 7.1)",
    "7.2": "Mask the instruction in the targets with -100 (book §7.9, Exercise 7.2)",
    "7.3": "Fine-tune on the original Alpaca dataset, allowed_max_length=512 (book §7.9, Exercise 7.3)",
    "7.4": "Fine-tune with LoRA (book Appendix E, Exercise 7.4)",
}


def stage_of(key: str) -> str:
    """The book stage of an exercise: where the tests naming it (`exercise` markers) live."""
    return exercise_stages().get(key, "other")


@dataclass
class Exercise:
    name: str
    module: str
    stage: str
    file: str
    line: int
    hint: str
    section: str
    outcomes: dict = field(default_factory=dict)  # test id -> outcome
    message: str = ""
    where: str = ""  # the learner's file:line the first failure came from
    signature: str = ""  # "signature differs: yours (...) — the book's (...)"
    blocked_by: list[str] = field(default_factory=list)  # failing exercises its code calls

    @property
    def status(self) -> str:
        status = self.tested_status
        if self.signature and status in (FAILING, SOLVED, PARTIAL):
            return SIGNATURE_DIFFERS  # its own outcome, not a failure of behaviour
        if self.blocked_by and status == FAILING:
            return BLOCKED
        return status

    @property
    def tested_status(self) -> str:
        """The status from the tests' outcomes alone."""
        values = list(self.outcomes.values())
        if not values:
            return NOT_STARTED
        if "failed" in values or TIMED_OUT in values:
            return FAILING
        if all(v == "not provided" for v in values):
            return NOT_PROVIDED
        if "passed" not in values:
            return NOT_STARTED
        # A helper the implementation does not provide (e.g. the book's code lacks a kit
        # extra) does not make the exercise unfinished: its own tests passed.
        done = ("passed", EXTRA_FAILED, "not provided")
        return SOLVED if all(v in done for v in values) else PARTIAL


def stub_hints(module_file: Path) -> dict[str, tuple[int, str]]:
    """Map each function/method in a stub file to (line, NotImplementedError message)."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    hints: dict[str, tuple[int, str]] = {}
    for top in tree.body:
        if not isinstance(top, ast.FunctionDef | ast.ClassDef):
            continue
        for node in ast.walk(top):
            if (
                isinstance(node, ast.Raise)
                and isinstance(node.exc, ast.Call)
                and getattr(node.exc.func, "id", None) == "NotImplementedError"
                and node.exc.args
            ):
                try:
                    message = ast.literal_eval(node.exc.args[0])
                except ValueError:
                    message = ast.unparse(node.exc.args[0])
                hints.setdefault(top.name, (node.lineno, str(message)))
    return hints


def catalog(
    package: str = "exercises", stage: str | None = None, provided: set[str] | None = None
) -> dict[str, Exercise]:
    """Every exercise in book order, located in the learner's own source where it has one.

    `stage` keeps one stage's exercises; names missing from `provided` (exercise keys the
    implementation defines, None for all) are *not provided* without running a test.
    """
    import importlib

    stage = canonical_stage(stage) if stage else None
    impl = _impl_or_none(package)
    found: list[tuple[tuple, Exercise]] = []
    for rank, short in enumerate(book_order()):
        try:
            stub_module = importlib.import_module(f"exercises.{short}")
        except ModuleNotFoundError:
            continue
        stub_file = inspect.getsourcefile(stub_module) or ""
        hints = stub_hints(Path(stub_file))
        for order, name in enumerate(public_names(reference_modules()[short])):
            if name not in hints:
                continue  # not learner work
            key = exercise_key(short, name)
            line, hint = hints[name]
            match = SECTION.search(hint)
            ex = Exercise(
                name=key,
                module=short,
                stage=stage_of(key),
                file=stub_file,
                line=line,
                hint=hint,
                section=match.group(0) if match else "",
            )
            if provided is not None and key not in provided:
                ex.outcomes["(not in the implementation)"] = NOT_PROVIDED
            elif impl is not None:
                ex.file, ex.line = _own_source(impl, short, name) or (ex.file, ex.line)
            found.append(((_stage_rank(ex.stage), rank, order), ex))
    exercises = {ex.name: ex for _, ex in sorted(found, key=lambda pair: pair[0])}
    needs = book_exercise_names()
    for number, hint in BOOK_EXERCISES.items():
        name = f"Exercise {number}"
        exercises[name] = ex = Exercise(name, "", BOOK_EXERCISES_STAGE, "", 0, hint, name)
        if provided is not None and not needs.get(name, set()) & provided:
            ex.outcomes["(not in the implementation)"] = NOT_PROVIDED
    if stage:
        exercises = {k: ex for k, ex in exercises.items() if ex.stage == stage}
    return exercises


def _stage_rank(stage: str) -> int:
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)


def _impl_or_none(package: str) -> Impl | None:
    try:
        return Impl(package)
    except Exception:  # noqa: BLE001 - the learner's package may fail to import
        return None


def _own_source(impl: Impl, short: str, name: str) -> tuple[str, int] | None:
    """Where the learner defined `name` (their file, their line), if it can be told."""
    try:
        return source_of(impl.lookup(name, short))
    except Exception:  # noqa: BLE001 - NotProvided, or a learner's object that breaks inspect
        return None


def mark_blocked(exercises: dict[str, Exercise], depends: dict[str, set[str]]) -> None:
    """X is blocked by Y when both fail and X's code calls Y (and Y's does not call X)."""
    broken = (FAILING, SIGNATURE_DIFFERS)
    for ex in exercises.values():
        if ex.tested_status != FAILING:
            continue
        ex.blocked_by = [
            other
            for other in exercises
            if other in depends.get(ex.name, ())
            and ex.name not in depends.get(other, ())
            and exercises[other].status in broken
        ]


def blocked_text(ex: Exercise) -> str:
    if ex.blocked_by[0].startswith("needs "):  # a value skipped while loading a learner's file
        return f"blocked: {ex.blocked_by[0]}"
    return f"blocked by {', '.join(ex.blocked_by)} (fix {ex.blocked_by[0]} first)"


def next_exercise(exercises: dict[str, Exercise]) -> Exercise | None:
    """The first exercise in book order that is failing, in progress or not started."""
    for statuses in ((FAILING, SIGNATURE_DIFFERS), (PARTIAL,), (BLOCKED,), (NOT_STARTED,)):
        for ex in exercises.values():
            if ex.status in statuses and ex.outcomes:
                return ex
    return next((ex for ex in exercises.values() if ex.status == NOT_STARTED), None)


def render_table(exercises: dict[str, Exercise]) -> str:
    """The per-stage table: solved / failing / not started counts."""
    rows = []
    for stage in [*STAGE_ORDER, "other"]:
        members = [ex for ex in exercises.values() if ex.stage == stage]
        if not members:
            continue
        count = {
            s: sum(ex.status == s for ex in members)
            for s in (SOLVED, FAILING, PARTIAL, NOT_STARTED, NOT_PROVIDED)
        }
        rows.append((stage, len(members), count))
    # Columns for the learner-code outcomes only when some exercise has one (same table otherwise).
    extra = [
        s for s in (SIGNATURE_DIFFERS, BLOCKED) if any(e.status == s for e in exercises.values())
    ]
    head = f"{'stage':<18}{'solved':>8}{'failing':>9}{'in progress':>13}{'not started':>13}{'not provided':>14}"
    head += "".join(f"{s:>{len(s) + 2}}" for s in extra)
    lines = [head, "-" * len(head)]
    for stage, total, c in rows:
        lines.append(
            f"{stage:<18}{c[SOLVED]:>5}/{total:<2}{c[FAILING]:>9}{c[PARTIAL]:>13}{c[NOT_STARTED]:>13}{c[NOT_PROVIDED]:>14}"
            + "".join(
                f"{sum(ex.status == s for ex in exercises.values() if ex.stage == stage):>{len(s) + 2}}"
                for s in extra
            )
        )
    return "\n".join(lines)


def render_next(ex: Exercise | None, exercises: dict[str, Exercise] | None = None) -> str:
    """The "Next:" lines: what to do next, or how the run ended when nothing is left."""
    if ex is None:
        missing = [e for e in (exercises or {}).values() if e.status == NOT_PROVIDED]
        if missing:
            return (
                f"Every exercise this implementation provides is solved; {len(missing)} "
                "not provided (see the table)."
            )
        return "Every exercise is solved. Well done!"
    status = {FAILING: "fix", PARTIAL: "finish", NOT_STARTED: "write"}.get(ex.status, "write")
    if ex.status == SIGNATURE_DIFFERS:
        status = "fix the signature of"
    text = [f"Next: {status} `{ex.name}` ({ex.stage}, {ex.section or 'see the hint'})"]
    if ex.file:
        text.append(f"  {ex.file}:{ex.line}")
    if ex.signature:
        text.append(f"  {ex.signature}")
        text.append(
            "  (the kit calls it with the book's parameter names: rename yours, or map them in "
            "an adapter: KEYWORDS = {" + repr(ex.name) + ": {'book_name': 'your_name'}})"
        )
    if ex.status == BLOCKED:
        text.append(f"  {blocked_text(ex)}")
    text.append(f"  hint: {ex.hint}")
    message, where = failure_text(ex)
    if message:
        text.append(f"  last failure: {message.splitlines()[0][:200]}")
        if where:
            text.append(f"    at {where}")
    return "\n".join(text)


def failure_text(ex: Exercise) -> tuple[str, str]:
    """(message, learner's file:line) of the exercise's first failure; nothing once it is solved.

    A solved exercise may still carry the message of a failed kit extra: neither "Next:"
    nor the Gradescope output shows it as that exercise's failure (the JSON report keeps
    the raw `message` for tools).
    """
    return ("", "") if ex.status == SOLVED else (ex.message, ex.where)


def exit_status(exercises: dict[str, Exercise]) -> int:
    """`ftkit check`'s exit status, read off the table: 1 when an exercise is failing, else 0.

    Failing includes timed out and blocked (and a differing signature whose tests fail); solved,
    in progress, not started and not provided do not fail a run, and neither do kit extras a
    book-only implementation fails.
    """
    return int(any(ex.tested_status == FAILING for ex in exercises.values()))


def write_json(path: Path, payload: dict) -> None:
    """Write a report atomically, creating its folder; OSError when it cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    tmp.replace(path)


def write_report(exercises: dict[str, Exercise], path: Path, impl: str) -> None:
    """Machine-readable results for teachers and CI: one record per exercise."""
    records = [
        {
            "name": ex.name,
            "stage": ex.stage,
            "module": ex.module,
            "status": ex.status,
            "section": ex.section,
            "message": ex.message,  # raw, for tools (tests/mistakes reads it)
            "signature": ex.signature,
            "blocked_by": ex.blocked_by,
            "tests": ex.outcomes,
            "file": ex.file,  # where the learner writes it (their own file where it has one)
            "line": ex.line,
            "where": ex.where,  # the learner's file:line its first failure came from
        }
        for ex in exercises.values()
    ]
    write_json(path, {"impl": impl, "exercises": records})


def write_gradescope(exercises: dict[str, Exercise], path: Path) -> None:
    """Gradescope's results.json: one test per exercise the implementation provides, 1 point solved.

    Not provided ones are left out (so the total counts only what was handed in); not started
    ones score 0 of 1 and say so (no `status`, so not "failed"); solved ones carry no failure text.
    """
    tests = []
    for ex in exercises.values():
        if ex.status == NOT_PROVIDED:
            continue
        output = [f"{ex.status} ({ex.stage}, {ex.section or 'see the hint'})"]
        if ex.signature:
            output.append(ex.signature)
        if ex.blocked_by:
            output.append(blocked_text(ex))
        if ex.status != SOLVED:
            output.append(f"hint: {ex.hint}")
        message, where = failure_text(ex)
        if message:
            output.append(f"last failure: {message}")
        if where:
            output.append(f"at {where}")
        test = {
            "name": ex.name if ex.status != NOT_STARTED else f"{ex.name} (not started)",
            "score": 1.0 if ex.status == SOLVED else 0.0,
            "max_score": 1.0,
            "output": "\n".join(output),
        }
        if ex.status != NOT_STARTED:
            test["status"] = "passed" if ex.status == SOLVED else "failed"
        tests.append(test)
    counts = {s: sum(ex.status == s for ex in exercises.values()) for s in (SOLVED, NOT_STARTED)}
    summary = (
        f"{counts[SOLVED]} of {len(tests)} provided exercises solved, "
        f"{counts[NOT_STARTED]} not started, {len(tests) - counts[SOLVED] - counts[NOT_STARTED]} "
        "failing or unfinished"
    )
    write_json(
        path,
        {"score": sum(t["score"] for t in tests), "output": summary, "tests": tests},
    )
