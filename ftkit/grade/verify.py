"""Verdicts decided outside the learner's process.

The worker (pytest with the learner's code) writes two things: the kit's JSON report (which
test passed, per exercise) and the record stream of `ftkit.asserts` (the value each
assertion helper was given, as JSON data). Neither is trusted. The same tests run once on
the kit's `reference` in a trusted process; a test the worker calls passed counts only when
its recorded values match the reference's, one by one, within the tolerance the reference's
record carries. A test whose reference run records no value (a bare `assert`, `pytest.raises`)
is *unverified*: its failure counts, its pass alone never solves an exercise.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections import defaultdict
from pathlib import Path

from ftkit.check.progress import NOT_PROVIDED, SOLVED, Exercise, catalog

MAX_MESSAGE = 2000
# Names of the kit's answer key: a submission that imports them is flagged.
FORBIDDEN = re.compile(r"^(reference|ftkit\._book|ftkit\.layout)(\.|$)")


def read_records(path: Path) -> dict[str, list[dict]]:
    """The record stream, by test id (unreadable lines are dropped: they verify nothing)."""
    records: dict[str, list[dict]] = defaultdict(list)
    if not path.is_file():
        return records
    with path.open(encoding="utf-8", errors="replace") as stream:
        for line in stream:
            try:
                record = json.loads(line)
                records[str(record["test"])].append(record)
            except (ValueError, KeyError, TypeError):
                continue
    return records


def read_report(path: Path) -> dict | None:
    """The worker's JSON report, or None when it is missing or not the kit's format."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        return report if isinstance(report.get("exercises"), list) else None
    except (OSError, ValueError, AttributeError):
        return None


def _close(got, want, atol: float, rtol: float) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want or got == want
    if isinstance(want, int | float) and isinstance(got, int | float):
        if isinstance(want, float) and math.isnan(want):
            return isinstance(got, float) and math.isnan(got)
        return abs(got - want) <= atol + rtol * abs(want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(_close(g, w, atol, rtol) for g, w in zip(got, want))
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(_close(got[k], want[k], atol, rtol) for k in want)
    return got == want


def same_record(got: dict, want: dict) -> bool:
    """The worker's record matches the reference's: same helper, name and value, within the
    reference's tolerance (never the worker's)."""
    if (got.get("kind"), got.get("name")) != (want.get("kind"), want.get("name")):
        return False
    g, w = got.get("value"), want.get("value")
    atol = float(want.get("atol", 0.0) or 0.0)
    rtol = float(want.get("rtol", 0.0) or 0.0)
    if isinstance(w, dict) and "tensor" in w:
        if not isinstance(g, dict) or g.get("tensor") != w["tensor"]:
            return False
        if want.get("check_dtype", True) and g.get("dtype") != w.get("dtype"):
            return False
        if want.get("kind") == "like":
            return True
        return _close(g.get("sample"), w["sample"], atol, rtol)
    return _close(g, w, atol, rtol)


def check_test(got: list[dict], want: list[dict]) -> str:
    """ "" when the worker's records of a test match the reference's, else why not."""
    if not got:
        return "no value reached the kit's assertion helpers"
    if len(got) != len(want):
        return f"{len(got)} values checked, the reference's run checks {len(want)}"
    for number, (g, w) in enumerate(zip(got, want), 1):
        if not same_record(g, w):
            return f"value {number} ({w.get('name')}) differs from the reference's"
    return ""


def verify(
    worker: dict,
    got: dict[str, list[dict]],
    reference: dict,
    want: dict[str, list[dict]],
    stage: str | None = None,
) -> tuple[dict[str, Exercise], int]:
    """The exercises (of `stage`, else all) with verified outcomes, and how many passes were
    verified."""
    ref_tests = {ex["name"]: set(ex.get("tests", {})) for ex in reference["exercises"]}
    exercises = catalog("reference", stage=stage, provided=None)
    verified_total = 0
    reported = {
        ex.get("name"): ex for ex in worker["exercises"] if isinstance(ex, dict) and "name" in ex
    }
    for name, ex in exercises.items():
        record = reported.get(name)
        tests = record.get("tests") if record else None
        if not isinstance(tests, dict) or not tests:
            ex.outcomes = {"(not in the implementation)": NOT_PROVIDED}
            continue
        outcomes, verified, message = {}, 0, ""
        for nodeid, outcome in tests.items():
            nodeid, outcome = str(nodeid), str(outcome)
            if outcome != "passed":
                outcomes[nodeid] = outcome
                continue
            if nodeid not in ref_tests.get(name, set()):
                why = "it is not one of this exercise's tests"
            elif not want.get(nodeid):
                outcomes[nodeid] = "passed"  # unverified: cannot solve the exercise alone
                continue
            else:
                why = check_test(got.get(nodeid, []), want[nodeid])
            if why:
                outcomes[nodeid] = "failed"
                message = message or f"not verified: {nodeid.split('::')[-1]}: {why}"
            else:
                outcomes[nodeid] = "passed"
                verified += 1
        ex.outcomes = outcomes
        ex.message = message or str(record.get("message", ""))[:MAX_MESSAGE]
        ex.signature = str(record.get("signature", ""))[:MAX_MESSAGE]
        # Where the learner's code is (for "Next:"): text to show, nothing decided from it.
        ex.where = str(record.get("where", ""))[:MAX_MESSAGE]
        if isinstance(record.get("file"), str) and isinstance(record.get("line"), int):
            ex.file, ex.line = record["file"][:MAX_MESSAGE], record["line"]
        blocked = record.get("blocked_by") or []
        ex.blocked_by = [b for b in blocked if isinstance(b, str) and b in exercises]
        if ex.status == SOLVED and verified == 0:
            ex.outcomes["(no verified test)"] = "failed"
            ex.message = "passed only tests whose values the grader cannot check"
        verified_total += verified
    return exercises, verified_total


def unverifiable(want: dict[str, list[dict]], reference: dict) -> list[str]:
    """The reference's tests that record no value (bare asserts): their passes verify nothing."""
    tests = {t for ex in reference["exercises"] for t in ex.get("tests", {})}
    return sorted(t for t in tests if not want.get(t))


def _sources(path: Path) -> list[tuple[str, str]]:
    """(file name, Python source) of a submission: .py files and notebooks' code cells."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    found = []
    for file in files:
        try:
            if file.suffix == ".py":
                found.append((file.name, file.read_text(encoding="utf-8", errors="replace")))
            elif file.suffix == ".ipynb":
                cells = json.loads(file.read_text(encoding="utf-8")).get("cells", [])
                code = [
                    "".join(c.get("source", ""))
                    for c in cells
                    if isinstance(c, dict) and c.get("cell_type") == "code"
                ]
                lines = "\n".join(code).splitlines()
                found.append(
                    (file.name, "\n".join(ln for ln in lines if not ln.startswith(("%", "!"))))
                )
        except (OSError, ValueError, AttributeError):
            continue
    return found


def stub_imports(exercises_dir: Path) -> dict[str, set[str]]:
    """File name -> the `reference` names the kit's stub of that name imports itself (the book's
    tooling, e.g. `generate` in evaluation.py): a learner's `ftkit init` folder keeps them."""
    allowed: dict[str, set[str]] = defaultdict(set)
    for stub in exercises_dir.glob("*.py"):
        for node in ast.walk(ast.parse(stub.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and FORBIDDEN.match(node.module):
                allowed[stub.name] |= {f"{node.module}.{a.name}" for a in node.names}
    return allowed


def flags(path: Path, reference_dir: Path, exercises_dir: Path | None = None) -> list[str]:
    """Why a submission is flagged: it imports the kit's answer key (beyond what the kit's own
    stub of the same file imports), or copies a reference file."""
    copies = {p.read_bytes(): p.name for p in reference_dir.glob("*.py") if p.name != "__init__.py"}
    allowed = stub_imports(exercises_dir) if exercises_dir else {}
    found = []
    for name, source in _sources(path):
        if source.encode() in copies:
            found.append(f"{name} is a copy of the kit's reference/{copies[source.encode()]}")
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue  # the check reports it
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [f"{node.module}.{a.name}" for a in node.names]
                if set(modules) <= allowed.get(name, set()):
                    continue
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                modules = [node.value] if FORBIDDEN.match(node.value) else []
            bad = next((m for m in modules if FORBIDDEN.match(m)), None)
            if bad:
                found.append(f"{name}:{node.lineno} uses the kit's {bad.split('.')[0]!r}")
                break
    return found
