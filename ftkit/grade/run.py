"""Grade a folder of submissions: each checked in its sandbox, verified, scored, summed up.

`check_in_sandbox` and `decide` are the two halves every sandboxed check goes through: `ftkit
grade` for each submission, and `ftkit check --sandbox` (`check`) for a learner's own code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from ftkit.asserts import RECORD_ENV
from ftkit.check.plugin import PROGRESS_ENV
from ftkit.check.progress import (
    SOLVED,
    Exercise,
    write_gradescope,
    write_json,
    write_report,
)
from ftkit.grade import sandbox, verify
from ftkit.layout import BOOK_TESTS, EXERCISES, GOLDEN, ROOT

SUBMISSION_SUFFIXES = (".py", ".ipynb")
WORK = ".work"  # under GRADES/: each submission's temporary copy while it is checked
REFERENCE_RUN = ".reference"  # under GRADES/: the reference's recorded values, by kit version
MEMORY_ERRORS = ("MemoryError", "can't allocate memory", "Cannot allocate memory")


@dataclass(frozen=True)
class Settings:
    stage: str | None = None
    keyword: str | None = None  # pytest -k, as `ftkit check -k`
    timeout: float = 30.0  # per test, as `ftkit check --timeout`
    limits: sandbox.Limits = sandbox.Limits()
    verbose: bool = False  # `ftkit check`'s options for the learner's run
    execute: bool = False
    book_only: bool = False

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def selection(self) -> str:
        """What the reference's run depends on: which tests run."""
        return json.dumps([self.stage, self.keyword])


@dataclass
class Checked:
    """What a sandboxed check left: how it ended, the worker's report and records (untrusted),
    and the test that was running last (for a limit's message only)."""

    outcome: sandbox.Outcome
    worker: dict | None
    records: dict[str, list[dict]]
    running: str


def submissions(folder: Path) -> list[Path]:
    """Every submission in `folder`: a .py file, a notebook, or a folder (hidden ones skipped)."""
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith((".", "_")) and (p.is_dir() or p.suffix in SUBMISSION_SUFFIXES)
    )


def digest(paths: list[Path], extra: str) -> str:
    """SHA-256 over files' names and bytes (folders walked in order) and `extra`."""
    h = hashlib.sha256(extra.encode())
    for path in paths:
        files = [path]
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            )
        for file in files:
            h.update(str(file.relative_to(path.parent)).encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


def kit_version() -> str:
    """What the verdicts depend on in the kit: its tests, goldens, reference and checker."""
    parts = [
        BOOK_TESTS,
        GOLDEN,
        ROOT / "reference",
        ROOT / "ftkit" / "check",
        ROOT / "ftkit" / "asserts.py",
        ROOT / "ftkit" / "grade",
    ]
    return digest([p for p in parts if p.exists()], "")


def check_argv(impl: str, report: Path, settings: Settings) -> list[str]:
    """`ftkit check`'s own pytest command line (its child's), writing the kit's JSON report;
    no table (the parent prints the verified one)."""
    from ftkit.check.run import pytest_args

    opts = {"verbose": settings.verbose, "execute": settings.execute}
    args = pytest_args(
        impl, settings.stage, settings.keyword, report, timeout=settings.timeout, **opts
    )
    return [*args, "--ftkit-no-table"] + (["--book-only"] if settings.book_only else [])


def kit_env() -> dict[str, str]:
    """The kit importable first (the checkout or install this `ftkit` runs from)."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def reference_run(cache: Path, settings: Settings, say=None) -> tuple[dict, dict]:
    """The reference's report and recorded values (a trusted run, cached under `cache` by kit
    version and the tests selected); `say` hears when it has to run."""
    key = hashlib.sha256((kit_version() + settings.selection()).encode()).hexdigest()[:16]
    folder = cache / key
    report, records = folder / "report.json", folder / "records.jsonl"
    if not report.is_file():
        if say is not None:
            say("running the kit's reference once for this kit version and selection (cached)")
        folder.mkdir(parents=True, exist_ok=True)
        records.unlink(missing_ok=True)
        env = sandbox.sandbox_env({**kit_env(), RECORD_ENV: str(records)})
        env.update(HOME=str(folder), FTKIT_HOME=os.environ.get("FTKIT_HOME", str(folder)))
        env.pop("MPLCONFIGDIR")
        plain = Settings(stage=settings.stage, keyword=settings.keyword, timeout=settings.timeout)
        done = subprocess.run(
            check_argv("reference", report, plain), env=env, capture_output=True, text=True
        )
        if done.returncode != 0 or verify.read_report(report) is None:
            report.unlink(missing_ok=True)
            raise SystemExit(
                "ftkit: the kit's reference does not pass its own tests here, so nothing "
                f"can be verified:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
    return verify.read_report(report), verify.read_records(records)


def verdict_of(checked: Checked, flagged: list[str], settings: Settings) -> str:
    """One line: how the check ended, when not normally."""
    outcome, worker = checked.outcome, checked.worker
    if flagged:
        return "flagged: " + "; ".join(flagged)
    limits = settings.limits
    if outcome.limit:
        test = checked.running.split("::")[-1]
        return f"{outcome.limit} in {test}" if test else outcome.limit
    memory = f"memory limit {limits.memory_gb:g} GB exceeded"
    if worker is not None:
        for ex in worker["exercises"]:
            if any(word in str(ex.get("message", "")) for word in MEMORY_ERRORS):
                failing = [t for t, o in ex.get("tests", {}).items() if o == "failed"]
                return f"{memory} in {failing[0].split('::')[-1]}" if failing else memory
        return ""
    if any(word in outcome.output for word in MEMORY_ERRORS):
        return memory
    if outcome.returncode == 2:
        return "cannot be imported (see its output)"
    return f"crashed: the check ended with status {outcome.returncode} and no report"


def check_in_sandbox(
    impl: str,
    work: Path,
    settings: Settings,
    *,
    copy: bool = False,
    slot: int = 0,
    hidden: list[Path] = (),
    echo=None,
) -> Checked:
    """Check `impl` (a path, or a name the kit provides) in a sandbox whose one writable folder
    is `work`. A path is copied into `work` first (`copy`), else shown read-only at its own
    place; `hidden` folders are empty inside; `echo` gets its output as it comes."""
    from ftkit.check.learner import IGNORED_FOLDERS, is_path
    from ftkit.io.assets import cache_dir

    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    (work / "tmp").mkdir()
    readable = []
    if copy:
        path, impl = Path(impl), str(work / "submission" / Path(impl).name)
        Path(impl).parent.mkdir()
        if path.is_dir():
            shutil.copytree(path, impl, ignore=shutil.ignore_patterns(*IGNORED_FOLDERS))
        else:
            shutil.copy2(path, impl)
    elif is_path(impl):
        readable.append(Path(impl).resolve())
    report, records = work / "out" / "report.json", work / "out" / "records.jsonl"
    progress = work / "out" / "progress.txt"
    env = sandbox.sandbox_env(
        {
            **kit_env(),
            RECORD_ENV: str(records),
            PROGRESS_ENV: str(progress),
            "TMPDIR": str(work / "tmp"),
            "HOME": str(work / "tmp"),
        }
    )
    env["FTKIT_HOME"] = str(cache_dir())  # downloaded assets: read-only inside
    env["MPLCONFIGDIR"] = str(work / "tmp" / "matplotlib")
    outcome = sandbox.run(
        check_argv(impl, report, settings),
        work,
        env=env,
        limits=settings.limits,
        slot=slot,
        hidden=list(hidden),
        readable=readable,
        echo=echo,
    )
    worker = None if outcome.limit else verify.read_report(report)
    try:
        running = progress.read_text(encoding="utf-8", errors="replace").splitlines()[-1][:300]
    except (OSError, IndexError):
        running = ""
    return Checked(outcome, worker, verify.read_records(records), running)


def decide(
    source: Path, checked: Checked, settings: Settings, reference: tuple[dict, dict]
) -> tuple[dict[str, Exercise] | None, str, int]:
    """Outside the learner's process: the verified exercises (None: no outcome to trust), the
    verdict line ("" for a normal end) and how many passes were verified. `source` is the
    submission's own files (read for flags, never run)."""
    flagged = verify.flags(source, ROOT / "reference", EXERCISES)
    verdict = verdict_of(checked, flagged, settings)
    if checked.worker is None or flagged:
        return None, verdict, 0
    exercises, verified = verify.verify(
        checked.worker, checked.records, *reference, stage=settings.stage
    )
    return exercises, verdict, verified


def write_results(exercises: dict[str, Exercise] | None, verdict: str, path: Path) -> dict:
    """Gradescope's results.json from verified exercises, the verdict first in its output; with
    nothing to trust, no point and the verdict as the output."""
    if exercises is None:
        write_json(path, {"score": 0.0, "output": verdict, "tests": []})
    else:
        write_gradescope(exercises, path)
        if verdict:
            results = json.loads(path.read_text(encoding="utf-8"))
            results["output"] = f"{verdict}\n{results['output']}"
            write_json(path, results)
    return json.loads(path.read_text(encoding="utf-8"))


def grade_one(path: Path, out: Path, settings: Settings, slot: int, reference, hidden) -> dict:
    """Check one submission in its sandbox; write its results.json and report.json."""
    name = path.name
    folder = out / name
    key = digest([path], settings.key() + kit_version())
    previous = folder / "grade.json"
    if previous.is_file():
        try:
            row = json.loads(previous.read_text(encoding="utf-8"))
            if row.get("hash") == key:
                return {**row, "skipped": True}
        except ValueError:
            pass
    work = out / WORK / name
    checked = check_in_sandbox(str(path), work, settings, copy=True, slot=slot, hidden=hidden)
    outcome = checked.outcome
    exercises, verdict, verified = decide(path, checked, settings, reference)
    folder.mkdir(parents=True, exist_ok=True)
    results = write_results(exercises, verdict, folder / "results.json")
    statuses = {}
    if exercises is not None:
        write_report(exercises, folder / "report.json", name)
        statuses = {n: ex.status for n, ex in exercises.items()}
    (folder / "output.txt").write_text(outcome.output, encoding="utf-8")
    row = {
        "name": name,
        "hash": key,
        "score": results["score"],
        "max_score": sum(t.get("max_score", 0) for t in results["tests"]),
        "verdict": verdict,
        "statuses": statuses,
        "messages": {
            n: ex.message.splitlines()[0][:200]
            for n, ex in (exercises or {}).items()
            if ex.status not in (SOLVED,) and ex.message
        },
        "verified_passes": verified,
        "wall_s": round(outcome.wall_s, 2),
        "cpu_s": round(outcome.cpu_s, 1),
        "peak_mb": outcome.peak_mb,
        "sandboxed": outcome.sandboxed,
        "outlived": outcome.outlived,
    }
    write_json(previous, row)
    shutil.rmtree(work, ignore_errors=True)
    return row


def grade(folder: Path, out: Path, settings: Settings, jobs: int, say=print) -> list[dict]:
    """Grade every submission in `folder` into `out`; the rows of the class summary."""
    from ftkit.grade.summary import write_summary

    found = submissions(folder)
    if not found:
        raise SystemExit(f"ftkit grade: no submissions (.py, .ipynb or folders) in {folder}")
    if sandbox.bwrap() is None:
        say(sandbox.warn_unsandboxed())
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    reference = reference_run(out / REFERENCE_RUN, settings)
    say(f"reference run ready ({time.monotonic() - start:.0f} s); grading {len(found)} submissions")
    hidden = [folder.resolve(), out.resolve()]
    slots = list(range(jobs))
    lock = threading.Lock()

    def one(path: Path) -> dict:
        with lock:
            slot = slots.pop()
        try:
            row = grade_one(path, out.resolve(), settings, slot, reference, hidden)
        finally:
            with lock:
                slots.append(slot)
        done = "unchanged, skipped" if row.get("skipped") else f"{row['wall_s']:.0f} s"
        say(f"{row['name']}: {row['score']:g}/{row['max_score']:g} {row['verdict']} ({done})")
        return row

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(one, found))
    shutil.rmtree(out / WORK, ignore_errors=True)
    write_summary(rows, out)
    say(
        f"graded {len(rows)} submissions in {time.monotonic() - start:.0f} s: {out / 'summary.csv'}, {out / 'summary.html'}"
    )
    return rows


SANDBOX_CACHE = "sandbox"  # under the kit's cache: `ftkit check --sandbox`'s reference run and work


def check(impl: str, settings: Settings, report: Path | None, report_format: str = "json") -> int:
    """`ftkit check --sandbox`: the learner's code checked as `ftkit grade` checks a submission
    (sandbox, limits, every verdict decided here, outside it), printed as `ftkit check` prints
    it: the check's own output as it comes, then the table and "Next:"; its exit status."""
    from ftkit.check.learner import is_path
    from ftkit.check.plugin import _header
    from ftkit.check.progress import exit_status, next_exercise, render_next, render_table
    from ftkit.io.assets import cache_dir

    if not (impl == "exercises" or is_path(impl)):
        print(
            f"ftkit check --sandbox: --impl {impl!r}: give the path of your .py file, notebook "
            "or folder (or exercises); a package on the Python path is not sandboxed",
            file=sys.stderr,
        )
        return 2
    source = EXERCISES if impl == "exercises" else Path(impl).expanduser().resolve()
    if not source.exists():
        print(f"ftkit check --sandbox: --impl {impl!r}: no such file or folder", file=sys.stderr)
        return 2
    if sandbox.bwrap() is None:
        print(sandbox.warn_unsandboxed().replace("ftkit grade", "ftkit check"), file=sys.stderr)
    cache = cache_dir() / SANDBOX_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    say = functools.partial(print, "ftkit check --sandbox:", file=sys.stderr)
    reference = reference_run(cache / "reference", settings, say)
    work = Path(tempfile.mkdtemp(prefix="check-", dir=cache))

    def echo(chunk: bytes) -> None:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()

    target = impl if impl == "exercises" else str(source)
    try:
        checked = check_in_sandbox(target, work, settings, hidden=[cache], echo=echo)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    exercises, verdict, _ = decide(source, checked, settings, reference)
    if verdict:
        print(f"ftkit check --sandbox: {verdict}")
    if report is not None:
        if report_format == "gradescope":
            write_results(exercises, verdict, report)
        elif exercises is not None:
            write_report(exercises, report, impl)
        print(f"results written to {report}")
    if exercises is None:
        imported = checked.outcome.returncode == 2 and not checked.outcome.limit
        return 2 if imported else 1
    width = shutil.get_terminal_size((80, 24)).columns
    print(f" ftkit check: {_header(target)} ".center(width, "="))
    print(render_table(exercises))
    print()
    print(render_next(next_exercise(exercises), exercises))
    return exit_status(exercises)
