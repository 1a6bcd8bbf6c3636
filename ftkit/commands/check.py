"""`ftkit check`: the command line of the checker (the work is in `ftkit/check/run.py`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from ftkit.check.plugin import DEFAULT_TIMEOUT_S

    parser = subparsers.add_parser(
        "check",
        help="check your implementation (default: your `ftkit init` folder, else the kit's "
        "exercises/) against the book",
        description="Run the kit's tests against an implementation and print a table per book "
        "stage (solved / failing / not started) and the next exercise to do.",
    )
    parser.add_argument(
        "--impl",
        default=None,
        help="exercises, reference, an importable package/adapter module, or a path to your "
        ".py script, .ipynb notebook or folder (see --execute); default: "
        "the folder of the nearest ftkit.toml (`ftkit init`), else exercises",
    )
    parser.add_argument(
        "--execute",
        action="store_true",
        help="--impl NOTEBOOK.ipynb: run it top to bottom first (default: statement by "
        "statement, downloads and training skipped)",
    )
    parser.add_argument(
        "--book-only",
        action="store_true",
        help="your code is the book's code only: report the kit's extras (named errors, extra "
        "options) as not provided, as BOOK_CODE_ONLY = True does in an adapter",
    )
    parser.add_argument("--stage", help="only this book stage (e.g. collate, model, data, LoRA)")
    parser.add_argument("-k", dest="keyword", help="only tests matching this pytest -k expression")
    parser.add_argument("--report", type=Path, help="write per-exercise results as JSON here")
    parser.add_argument(
        "--format",
        dest="report_format",
        choices=("json", "gradescope"),
        default="json",
        help="--report's format: the kit's JSON (default) or Gradescope's results.json "
        "(without --report: ./results.json)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds one test may take before it counts as timed out (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list every test, skips included"
    )
    parser.add_argument(
        "--watch", action="store_true", help="rerun the affected stage whenever a file changes"
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="check as `ftkit grade` does: your code in a sandbox (bubblewrap) with limits, "
        "every verdict decided outside it (default: in-process)",
    )
    from ftkit.commands.grade import add_limits

    add_limits(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ftkit.check.run import run

    return run(args)
