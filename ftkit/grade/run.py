"""Grade a folder of submissions: each checked in its sandbox, verified, scored, summed up."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from ftkit.asserts import RECORD_ENV
from ftkit.check.progress import SOLVED, write_gradescope, write_json, write_report
from ftkit.grade import sandbox, verify
from ftkit.layout import BOOK_TESTS, GOLDEN, ROOT

SUBMISSION_SUFFIXES = (".py", ".ipynb")
WORK = ".work"  # under GRADES/: each submission's temporary copy while it is checked
REFERENCE_RUN = ".reference"  # under GRADES/: the reference's recorded values, by kit version
MEMORY_ERRORS = ("MemoryError", "can't allocate memory", "Cannot allocate memory")


@dataclass(frozen=True)
class Settings:
    stage: str | None = None
    timeout: float = 30.0  # per test, as `ftkit check --timeout`
    limits: sandbox.Limits = sandbox.Limits()

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


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
    """`ftkit check`'s own pytest command line (its child's), writing the kit's JSON report."""
    from ftkit.check.run import pytest_args

    return pytest_args(impl, settings.stage, None, report, timeout=settings.timeout)


def kit_env() -> dict[str, str]:
    """The kit importable first (the checkout or install this `ftkit` runs from)."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def reference_run(out: Path, settings: Settings) -> tuple[dict, dict]:
    """The reference's report and recorded values (a trusted run, cached by kit version)."""
    key = hashlib.sha256((kit_version() + settings.key()).encode()).hexdigest()[:16]
    folder = out / REFERENCE_RUN / key
    report, records = folder / "report.json", folder / "records.jsonl"
    if not report.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        records.unlink(missing_ok=True)
        env = sandbox.sandbox_env({**kit_env(), RECORD_ENV: str(records)})
        env.update(HOME=str(folder), FTKIT_HOME=os.environ.get("FTKIT_HOME", str(folder)))
        env.pop("MPLCONFIGDIR")
        done = subprocess.run(
            check_argv("reference", report, settings), env=env, capture_output=True, text=True
        )
        if done.returncode != 0 or verify.read_report(report) is None:
            report.unlink(missing_ok=True)
            raise SystemExit(
                "ftkit grade: the kit's reference does not pass its own tests here, so nothing "
                f"can be verified:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
    return verify.read_report(report), verify.read_records(records)


def verdict_of(outcome: sandbox.Outcome, worker: dict | None, flagged: list[str], settings) -> str:
    """One line: how the check ended, when not normally."""
    if flagged:
        return "flagged: " + "; ".join(flagged)
    limits = settings.limits
    if outcome.limit:
        return outcome.limit
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
        return "cannot be imported (see output.txt)"
    return f"crashed: the check ended with status {outcome.returncode} and no report"


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
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    (work / "tmp").mkdir()
    copy = work / "submission" / name
    copy.parent.mkdir()
    shutil.copytree(path, copy) if path.is_dir() else shutil.copy2(path, copy)
    report, records = work / "out" / "report.json", work / "out" / "records.jsonl"
    env = sandbox.sandbox_env(
        {
            **kit_env(),
            RECORD_ENV: str(records),
            "TMPDIR": str(work / "tmp"),
            "HOME": str(work / "tmp"),
        }
    )
    env["FTKIT_HOME"] = str(work / "tmp" / "ftkit-home")
    env["MPLCONFIGDIR"] = str(work / "tmp" / "matplotlib")
    outcome = sandbox.run(
        check_argv(str(copy), report, settings),
        work,
        env=env,
        limits=settings.limits,
        slot=slot,
        hidden=hidden,
    )
    worker = None if outcome.limit else verify.read_report(report)
    flagged = verify.flags(path, ROOT / "reference")
    verdict = verdict_of(outcome, worker, flagged, settings)
    ref_report, ref_records = reference
    folder.mkdir(parents=True, exist_ok=True)
    exercises, verified = None, 0
    if worker is not None and not flagged:
        exercises, verified = verify.verify(
            worker, verify.read_records(records), ref_report, ref_records
        )
    if exercises is None:  # no outcome to trust: no point, the reason as the output
        write_json(folder / "results.json", {"score": 0.0, "output": verdict, "tests": []})
        statuses = {}
    else:
        write_gradescope(exercises, folder / "results.json")
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        if verdict:
            results["output"] = f"{verdict}\n{results['output']}"
            write_json(folder / "results.json", results)
        write_report(exercises, folder / "report.json", name)
        statuses = {n: ex.status for n, ex in exercises.items()}
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
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
    reference = reference_run(out, settings)
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
