"""`ftkit weights`: download OpenAI's GPT-2 checkpoints and list which sizes are cached.

`ftkit weights fetch 124M [--dir DIR]` gets the seven files of a size (verified,
atomic, resumable: rerun after an interruption); `ftkit weights list [--dir DIR]`
shows, per size, how many files are present and where.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="download OpenAI's pretrained GPT-2 weights; list cached sizes",
        description="OpenAI's pretrained GPT-2 checkpoints (book §5.5): fetch a size, list the cache.",
    )
    actions = parser.add_subparsers(dest="weights_action", metavar="ACTION")

    fetch = actions.add_parser("fetch", help="download (or verify cached) files of one size")
    fetch.add_argument("size", help="124M, 355M, 774M or 1558M")
    fetch.add_argument(
        "--dir",
        default=None,
        help="models folder; files go to DIR/SIZE/ as in the book (default: the kit's cache)",
    )
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    fetch.set_defaults(func=run_fetch)

    listing = actions.add_parser("list", help="which sizes are cached, and where")
    listing.add_argument("--dir", default=None, help="models folder to look in (default: cache)")
    listing.set_defaults(func=run_list)

    parser.set_defaults(func=lambda args: parser.print_help(sys.stderr) or 2)


def run_fetch(args: argparse.Namespace) -> int:
    from ftkit.io.assets import AssetError
    from ftkit.io.gpt2 import check_model_size, download_gpt2

    try:
        size = check_model_size(args.size)
    except ValueError as err:
        print(f"ftkit weights fetch: {err}", file=sys.stderr)
        return 2
    try:
        folder = download_gpt2(size, args.dir, progress=not args.quiet)
    except AssetError as err:
        print(f"ftkit weights fetch: {err}", file=sys.stderr)
        print("finished files are kept; rerun the same command to resume", file=sys.stderr)
        return 1
    print(f"GPT-2 {size}: all files verified in {folder}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ftkit.io.gpt2 import GPT2_FILES, GPT2_SIZES, cached_gpt2_files, gpt2_dir

    print(f"{'size':<6} {'files':>5} {'MB':>8}  folder")
    for size in GPT2_SIZES:
        folder = gpt2_dir(size, args.dir)
        present = cached_gpt2_files(size, args.dir)
        megabytes = sum((folder / f).stat().st_size for f in present) / 1e6
        shown = f"{megabytes:8.1f}" if present else f"{'-':>8}"
        print(f"{size:<6} {len(present):>2}/{len(GPT2_FILES)} {shown}  {folder}")
    return 0
