"""`ftkit grade`: check a class's submissions in sandboxes (the work is in `ftkit/grade/`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from ftkit.grade.sandbox import Limits

    d = Limits()
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
    parser.add_argument("--memory-gb", type=float, default=d.memory_gb, help="per process")
    parser.add_argument("--cpu-s", type=int, default=d.cpu_s, help="CPU seconds per process")
    parser.add_argument("--wall-s", type=int, default=d.wall_s, help="the whole check")
    parser.add_argument("--processes", type=int, default=d.processes, help="processes+threads")
    parser.add_argument("--output-mb", type=int, default=d.output_mb, help="output before stop")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ftkit.check.markers import canonical_stage
    from ftkit.grade.run import Settings, grade
    from ftkit.grade.sandbox import Limits

    if not args.submissions.is_dir():
        print(f"ftkit grade: {args.submissions} is not a folder of submissions")
        return 2
    limits = Limits(
        memory_gb=args.memory_gb,
        cpu_s=args.cpu_s,
        wall_s=args.wall_s,
        processes=args.processes,
        output_mb=args.output_mb,
    )
    stage = canonical_stage(args.stage) if args.stage else None
    settings = Settings(stage=stage, timeout=args.timeout, limits=limits)
    grade(args.submissions, args.out, settings, max(1, args.jobs))
    return 0
