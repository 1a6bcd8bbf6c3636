"""Run the book suite against an implementation in a child pytest, and watch for changes.

The child dies with its parent (Linux: PR_SET_PDEATHSIG), so killing `ftkit check`
leaves no pytest behind; the plugin runs the learner's code in a temporary folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ftkit.check.markers import canonical_stage, stage_files
from ftkit.commands.init import CONFIG
from ftkit.layout import BOOK_TESTS, INSTALLED, ROOT

PYTEST_INTERNAL_ERROR = 3  # pytest.ExitCode.INTERNAL_ERROR (not imported: a fast start)


def pytest_args(
    impl: str,
    stage: str | None,
    keyword: str | None,
    report: Path | None,
    *,
    report_format: str = "json",
    timeout: float | None = None,
    verbose: bool = False,
    execute: bool = False,
    book_only: bool = False,
) -> list[str]:
    """The pytest command line for one check run (tests/book only, selected by marker)."""
    # `--impl=PATH` as one word: pytest looks for its ini file above every loose path argument.
    # A stage's own files only: importing the others' test modules is most of pytest's start.
    files = stage_files(canonical_stage(stage)) if stage else []
    paths = [str(f) for f in files] or [str(BOOK_TESTS)]
    args = [sys.executable, "-m", "pytest", *paths, f"--impl={impl}", "--ftkit-summary"]
    if execute:
        args.append("--execute")
    if book_only:
        args.append("--book-only")
    # Skip lines only when asked: the table and "Next:" must stay in view.
    args += ["-v", "-ra"] if verbose else ["-q", "-rfE"]
    args += ["-p", "no:cacheprovider", "--no-header", "--rootdir", str(ROOT), "--tb=short"]
    if stage:
        args += ["--stage", canonical_stage(stage)]
    if keyword:
        args += ["-k", keyword]
    if timeout is not None and importlib.util.find_spec("pytest_timeout") is not None:
        args += ["--timeout", f"{timeout:g}"]
    if report:
        args += ["--ftkit-report", str(report.resolve()), "--ftkit-format", report_format]
    return args


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the parent dies (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def child_env() -> dict[str, str]:
    """The kit and the caller's folder importable from the temporary working directory."""
    env = dict(os.environ)
    paths = [str(ROOT), os.getcwd(), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def check_once(
    impl: str,
    stage: str | None,
    keyword: str | None,
    report: Path | None,
    *,
    sandbox: bool = False,
    **opts,
) -> int:
    if not BOOK_TESTS.is_dir():
        print(
            f"ftkit check: the book's suite is missing (no {BOOK_TESTS}); this install of "
            "ftkit is incomplete: reinstall it (pip install --force-reinstall llm-finetune-kit) "
            "or run from a source checkout",
            file=sys.stderr,
        )
        return 2
    from ftkit.check.learner import is_path

    if is_path(impl):  # the child runs in the kit's folder: a path relative to ours
        impl = str(Path(impl).expanduser().resolve())
    if sandbox:  # as `ftkit grade` checks a submission (ftkit/grade)
        from ftkit.grade import run as grade

        fmt = opts.pop("report_format", "json")
        settings = grade.Settings(
            stage=canonical_stage(stage) if stage else None, keyword=keyword, **opts
        )
        return grade.check(impl, settings, report.resolve() if report else None, fmt)
    args = pytest_args(impl, stage, keyword, report, **opts)
    linux = sys.platform.startswith("linux")
    child = subprocess.Popen(
        args, cwd=ROOT, env=child_env(), preexec_fn=_die_with_parent if linux else None
    )
    try:
        status = child.wait()
        # pytest's own failure (exit 3), said in one paragraph by the plugin: the run is not
        # a clean pass, and not an import problem (2).
        return 1 if status == PYTEST_INTERNAL_ERROR else status
    finally:
        if child.poll() is None:  # Ctrl-C or an error here: take the child down too
            child.kill()
            child.wait()


def watched_folder(impl: str) -> Path:
    """The folder holding an implementation's source files."""
    from ftkit.check.learner import is_path

    if is_path(impl):
        path = Path(impl).expanduser().resolve()
        return path if path.is_dir() else path.parent
    spec = importlib.util.find_spec(impl)
    if spec is None or spec.origin is None:
        raise SystemExit(f"--impl {impl!r}: cannot find it to watch (is it importable?)")
    return Path(spec.origin).parent


def stages_of_file(path: Path) -> set[str]:
    """The book stages whose exercises live in a changed module (by its file name)."""
    from ftkit.check.impl import exercise_keys
    from ftkit.check.progress import stage_of

    return {stage_of(key) for key, (module, _) in exercise_keys().items() if module == path.stem}


def watch(impl: str, keyword: str | None, report: Path | None, **opts) -> int:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    folder = watched_folder(impl)
    changed: set[Path] = set()

    class Handler(FileSystemEventHandler):
        def on_modified(self, event):
            if str(event.src_path).endswith((".py", ".ipynb")):
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
            stages = set().union(*(stages_of_file(p) for p in changed)) - {"other"}
            changed.clear()
            for stage in sorted(stages) or [None]:
                print(f"\n=== rerunning {stage or 'all stages'} ===")
                check_once(impl, stage, keyword, report, **opts)
    except KeyboardInterrupt:
        return 0
    finally:
        observer.stop()
        observer.join()


def configured_impl(start: Path) -> str | None:
    """`impl` of the nearest `ftkit.toml` (`ftkit init`) at or above `start`, as an absolute path."""
    for folder in (start, *start.parents):
        config = folder / CONFIG
        if config.is_file():
            with config.open("rb") as f:
                impl = tomllib.load(f).get("check", {}).get("impl")
            return str((folder / impl).resolve()) if impl else None
    return None


def default_impl() -> str:
    """No `--impl`: the learner's own folder (its ftkit.toml), else the kit's stubs."""
    try:
        found = configured_impl(Path.cwd())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise SystemExit(f"ftkit check: cannot read {CONFIG}: {err}") from err
    if found:
        print(f"checking {found} (from {CONFIG}; --impl to check something else)", file=sys.stderr)
    elif INSTALLED:
        print(
            "checking the kit's own stubs; `ftkit init DIR` starts a folder of your own to "
            "fill in (then `ftkit check` inside it)",
            file=sys.stderr,
        )
    return found or "exercises"


def may_have_accelerator() -> bool:
    """Whether a CUDA, ROCm or MPS device may be here, seen without importing torch (seconds)."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    return any(Path("/dev").glob("nvidia[0-9]*")) or any(
        Path(p).exists() for p in ("/dev/kfd", "/dev/dxg")
    )


def run(args: argparse.Namespace) -> int:
    if args.impl is None:
        args.impl = default_impl()

    if may_have_accelerator():  # a GPU that computes wrong is said before the check
        from ftkit.doctor import report_device

        report_device("auto", say=lambda line: print(line, file=sys.stderr))
    if args.stage:
        try:
            canonical_stage(args.stage)
        except ValueError as err:
            print(f"ftkit check: {err}", file=sys.stderr)
            return 2
    report = args.report
    if args.report_format == "gradescope" and report is None:
        report = Path("results.json")
    opts = {
        "report_format": args.report_format,
        "timeout": args.timeout,
        "verbose": args.verbose,
        "execute": args.execute,
        "book_only": args.book_only,
    }
    if args.sandbox:
        from ftkit.commands.grade import limits_of

        opts.update(sandbox=True, limits=limits_of(args))
    code = check_once(args.impl, args.stage, args.keyword, report, **opts)
    if args.watch:
        return watch(args.impl, args.keyword, report, **opts)
    return code
