"""`ftkit grade`: check a class's submissions in sandboxes (the work is in `ftkit/grade/`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_limits(parser: argparse.ArgumentParser) -> None:
    """The sandbox's limits as options (`ftkit grade`, `ftkit check --sandbox`)."""
    from ftkit.grade.sandbox import Limits

    d = Limits()
    group = parser.add_argument_group("sandbox limits (each a verdict when hit)")
    group.add_argument("--memory-gb", type=float, default=d.memory_gb, help="the whole check")
    group.add_argument("--cpu-s", type=int, default=d.cpu_s, help="CPU seconds, the whole check")
    group.add_argument("--wall-s", type=int, default=d.wall_s, help="the whole check")
    group.add_argument("--processes", type=int, default=d.processes, help="processes+threads")
    group.add_argument("--output-mb", type=int, default=d.output_mb, help="output before stop")


def limits_of(args: argparse.Namespace):
    """The limits `add_limits`' options give."""
    from ftkit.grade.sandbox import Limits

    return Limits(
        memory_gb=args.memory_gb,
        cpu_s=args.cpu_s,
        wall_s=args.wall_s,
        processes=args.processes,
        output_mb=args.output_mb,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "grade",
        help="grade a folder of submissions, each in a sandbox, into Gradescope results and a "
        "class summary",
        description="Check every submission (a .py file, notebook or folder in SUBMISSIONS) in "
        "its own sandbox with limits; verdicts are decided outside it. Writes "
        "OUT/<submission>/results.json and report.json, OUT/summary.csv and OUT/summary.html.",
    )
    parser.add_argument("submissions", type=Path, help="folder of submissions")
    parser.add_argument("--out", type=Path, required=True, help="folder for the grades")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="in parallel")
    parser.add_argument("--stage", help="only this book stage (as ftkit check --stage)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per test")
    add_limits(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ftkit.check.markers import canonical_stage
    from ftkit.grade.run import Settings, grade

    if not args.submissions.is_dir():
        print(f"ftkit grade: {args.submissions} is not a folder of submissions")
        return 2
    stage = canonical_stage(args.stage) if args.stage else None
    settings = Settings(stage=stage, timeout=args.timeout, limits=limits_of(args))
    grade(args.submissions, args.out, settings, max(1, args.jobs))
    return 0
