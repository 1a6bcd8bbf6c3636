"""Run the book suite against one-mistake copies of the reference (the kit's mutation testing).

A variant (`tests/mistakes/catalogue.py`) is the `reference` package copied into a
temporary folder under another name, with one exact text replacement applied to one
module. The book suite (tests/book) runs against that copy with `--impl`, keeping only
the tests whose `exercise` marker names the variant's exercise, and stopping at the
first failure (`-x`): what the learner would see for that exercise is that failure's
message (`--ftkit-report`'s `message`). A variant is *caught* when a test fails, and
*named* when that message contains one of its keywords (case-insensitive) that does
not also appear in the message of another variant of the same exercise (the strict rule,
`apply_strict_rule`: words every mistake of a function prints alike identify none of them).

Several variants run in one Python process (pytest.main in turn: torch is imported
once), and the catalogue is split over a pool of processes:

    python -m tests.mistakes.run                    # the whole catalogue, a table + figures
    python -m tests.mistakes.run NAME [NAME ...]    # some variants, e.g. layernorm-no-eps
    python -m tests.mistakes.run --json OUT NAME..  # results as JSON (the kit test uses it)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reference"
BOOK_TESTS = ROOT / "tests" / "book"


LAST_FIGURES: list[str] = []  # the figures of the whole catalogue's runs in this process


@dataclass
class Result:
    name: str
    caught: bool
    named: bool
    message: str  # what the learner sees for the exercise (first failure's first line)
    failed: list[str] = field(default_factory=list)  # failing test ids
    error: str = ""  # the variant could not be built or run


def package_name(name: str) -> str:
    return "mistake_" + "".join(c if c.isalnum() else "_" for c in name)


def build_variant(mistake, into: Path) -> str:
    """Write reference/ with the mistake's replacement applied as package `into/<name>`."""
    pkg = package_name(mistake.name)
    target = into / pkg
    shutil.copytree(REFERENCE, target, ignore=shutil.ignore_patterns("__pycache__"))
    source = target / f"{mistake.module}.py"
    text = source.read_text(encoding="utf-8")
    for old, new in mistake.edits:
        count = text.count(old)
        if count != 1:
            raise ValueError(
                f"{mistake.name}: {old!r} occurs {count} times in reference/{mistake.module}.py "
                "(a replacement must match exactly once)"
            )
        text = text.replace(old, new)
    source.write_text(text, encoding="utf-8")
    return pkg


class _Select:
    """Keep the book tests that check the variant's exercise; collect failure texts."""

    def __init__(self, exercise: str):
        self.exercise = exercise
        self.failed: list[str] = []

    def pytest_collection_modifyitems(self, config, items):
        keep = [
            item
            for item in items
            if any(self.exercise in mark.args for mark in item.iter_markers("exercise"))
        ]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed.append(report.nodeid)


def test_files(exercise: str) -> list[str]:
    """The tests/book files with a test whose `exercise` marker names `exercise`."""
    mark = re.compile(r"@pytest\.mark\.exercise\([^)]*\"" + re.escape(exercise) + r"\"")
    found = [str(f) for f in sorted(BOOK_TESTS.glob("test_*.py")) if mark.search(f.read_text())]
    return found or [str(BOOK_TESTS)]


def run_one(mistake, into: Path) -> Result:
    """Build one variant and run its exercise's book tests in this process."""
    import pytest

    try:
        pkg = build_variant(mistake, into)
    except Exception as err:  # noqa: BLE001 - reported as the variant's error
        return Result(mistake.name, False, False, "", error=str(err))
    report = into / f"{pkg}.json"
    select = _Select(mistake.exercise)
    args = [
        *test_files(mistake.exercise),
        "--impl",
        pkg,
        "--ftkit-report",
        str(report),
        "-x",
        "-q",
        "--timeout",  # the book tests' 30 s would time out training variants on a busy machine
        "120",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(ROOT),
        "--tb=no",
        "--no-header",
        "--disable-warnings",
    ]
    cwd = os.getcwd()
    try:
        pytest.main(args, plugins=[select])
    finally:
        os.chdir(cwd)
    message = ""
    if report.exists():
        for record in json.loads(report.read_text(encoding="utf-8"))["exercises"]:
            if record["name"] == mistake.exercise:
                message = record["message"]
    caught = bool(select.failed)
    named = caught and any(k.lower() in message.lower() for k in mistake.keywords)
    return Result(mistake.name, caught, named, message, select.failed)


def identifying_keywords(mistake, others: list[Result]) -> list[str]:
    """The mistake's keywords found in none of `others`' messages (other variants, same exercise)."""
    return [k for k in mistake.keywords if not any(k.lower() in r.message.lower() for r in others)]


def apply_strict_rule(results: list[Result]) -> list[Result]:
    """Count a variant as named only by keywords that no other variant of its exercise prints.

    A keyword in the message of another variant of the same function (the function's
    general recipe, a test's `why`) does not tell the learner which mistake they made.
    """
    from tests.mistakes.catalogue import by_name

    exercise = {r.name: by_name(r.name).exercise for r in results}
    for r in results:
        others = [o for o in results if o is not r and exercise[o.name] == exercise[r.name]]
        own = identifying_keywords(by_name(r.name), others)
        r.named = r.caught and any(k.lower() in r.message.lower() for k in own)
    return results


def run_here(names: list[str]) -> list[Result]:
    """Run the named variants one after another in this process."""
    from tests.mistakes.catalogue import by_name

    folder = Path(tempfile.mkdtemp(prefix="ftkit-mistakes-"))
    sys.path.insert(0, str(folder))
    try:
        return [run_one(by_name(name), folder) for name in names]
    finally:
        sys.path.remove(str(folder))
        shutil.rmtree(folder, ignore_errors=True)


def run_pool(names: list[str], workers: int = 2) -> list[Result]:
    """Run the variants in `workers` child processes (each takes every n-th variant)."""
    groups = [names[i::workers] for i in range(workers) if names[i::workers]]

    def child(group: list[str]) -> list[Result]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "results.json"
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            }
            subprocess.run(
                [sys.executable, "-m", "tests.mistakes.run", "--here", "--json", str(out), *group],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            if not out.exists():
                return [Result(n, False, False, "", error="the child process died") for n in group]
            return [Result(**r) for r in json.loads(out.read_text(encoding="utf-8"))]

    with ThreadPoolExecutor(len(groups)) as pool:
        results = [r for rs in pool.map(child, groups) for r in rs]
    order = {n: i for i, n in enumerate(names)}
    return apply_strict_rule(sorted(results, key=lambda r: order[r.name]))


def figures(results: list[Result]) -> str:
    total = len(results)
    caught = sum(r.caught for r in results)
    named = sum(r.named for r in results)
    return (
        f"caught {caught}/{total} ({100 * caught / total:.0f}%), "
        f"named {named}/{total} ({100 * named / total:.0f}%, strict: a keyword no other "
        "variant of the same function prints)"
    )


def main(argv: list[str] | None = None) -> int:
    from tests.mistakes.catalogue import CATALOGUE

    parser = argparse.ArgumentParser(prog="python -m tests.mistakes.run")
    parser.add_argument("names", nargs="*", help="variants to run (default: all)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--here", action="store_true", help="run in this process (no pool)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    names = args.names or [m.name for m in CATALOGUE]
    results = run_here(names) if args.here else run_pool(names, args.workers)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1), encoding="utf-8")
    if not args.here:
        for r in results:
            status = "named" if r.named else "caught" if r.caught else "SURVIVES"
            print(f"{status:8} {r.name:40} {r.error or r.message[:150]}")
        print(figures(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
