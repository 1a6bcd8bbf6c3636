"""`ftkit check`: run the kit's suite against an implementation and show the learner's progress."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check your implementation (default: exercises/) against the book",
        description="Run the kit's tests against an implementation and print a table per book "
        "stage (solved / failing / not started) and the next exercise to do.",
    )
    parser.add_argument(
        "--impl",
        default="exercises",
        help="exercises (default), reference, or an importable package/adapter module",
    )
    parser.add_argument("--stage", help="only this book stage (e.g. collate, model, data, LoRA)")
    parser.add_argument("-k", dest="keyword", help="only tests matching this pytest -k expression")
    parser.add_argument("--report", type=Path, help="write per-exercise results as JSON here")
    parser.add_argument(
        "--watch", action="store_true", help="rerun the affected stage whenever a file changes"
    )
    parser.set_defaults(func=run)


def pytest_args(
    impl: str, stage: str | None, keyword: str | None, report: Path | None
) -> list[str]:
    """The pytest command line for one check run."""
    from ftkit.progress import stage_modules

    targets = [str(ROOT / "tests")]
    if stage:
        modules = stage_modules(stage.replace("-", " "))
        targets = (
            sorted(
                {
                    str(path)
                    for module in modules
                    for path in (ROOT / "tests" / "book").glob(f"test_{module}*.py")
                }
            )
            or targets
        )
    args = [sys.executable, "-m", "pytest", *targets, "--impl", impl, "--ftkit-summary", "-q"]
    if stage and stage.replace("-", " ").lower() == "book exercises":
        args += ["-m", "book_exercise and not slow and not benchmark and not gpu"]
    args += ["-p", "no:cacheprovider", "--no-header"]
    if keyword:
        args += ["-k", keyword]
    if report:
        args += ["--ftkit-report", str(report.resolve())]
    return args


def check_once(impl: str, stage: str | None, keyword: str | None, report: Path | None) -> int:
    if not (ROOT / "tests").is_dir():
        print(
            f"ftkit check needs the kit's source checkout (no tests/ under {ROOT})", file=sys.stderr
        )
        return 2
    return subprocess.call(pytest_args(impl, stage, keyword, report), cwd=ROOT)


def watched_folder(impl: str) -> Path:
    """The folder holding an implementation's source files."""
    spec = importlib.util.find_spec(impl)
    if spec is None or spec.origin is None:
        raise SystemExit(f"--impl {impl!r}: cannot find it to watch (is it importable?)")
    origin = Path(spec.origin)
    return origin.parent


def stage_of_file(path: Path) -> str | None:
    """The book stage whose module a changed file is, if any."""
    from ftkit.progress import STAGES

    return next((stage for stage, mods in STAGES.items() if path.stem in mods), None)


def watch(impl: str, keyword: str | None, report: Path | None) -> int:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    folder = watched_folder(impl)
    changed: set[Path] = set()

    class Handler(FileSystemEventHandler):
        def on_modified(self, event):
            if str(event.src_path).endswith(".py"):
                changed.add(Path(event.src_path))

        on_created = on_modified

    observer = Observer()
    observer.schedule(Handler(), str(folder), recursive=True)
    observer.start()
    print(f"watching {folder} — save a file to rerun its stage; Ctrl-C to stop")
    try:
        while True:
            time.sleep(0.5)
            if not changed:
                continue
            time.sleep(0.3)  # let an editor finish writing
            stages = {stage_of_file(p) for p in changed}
            changed.clear()
            for stage in sorted(s for s in stages if s) or [None]:
                print(f"\n=== rerunning {stage or 'all stages'} ===")
                check_once(impl, stage, keyword, report)
    except KeyboardInterrupt:
        return 0
    finally:
        observer.stop()
        observer.join()


def run(args: argparse.Namespace) -> int:
    from ftkit.doctor import report_device

    report_device("auto", say=lambda line: print(line, file=sys.stderr))  # a GPU that is wrong
    if args.stage:
        from ftkit.progress import stage_modules

        try:
            stage_modules(args.stage.replace("-", " "))
        except ValueError as err:
            print(f"ftkit check: {err}", file=sys.stderr)
            return 2
    code = check_once(args.impl, args.stage, args.keyword, args.report)
    if args.watch:
        return watch(args.impl, args.keyword, args.report)
    return code
