"""`ftkit weights`: download GPT-2's pretrained weights from one of three sources; list what is cached.

`ftkit weights fetch 124M [--source hf|openai|book] [--dir DIR]` gets a size's files
(verified, atomic, resumable: rerun after an interruption); `ftkit weights verify
[SIZE] [--source S]` re-hashes what is cached; `ftkit weights list
[--dir DIR] [--source S]` shows, per size and source, how many files are present and
where. The sources are described in `ftkit.io.gpt2`.
"""

from __future__ import annotations

import argparse
import sys

from ftkit.io.gpt2 import DEFAULT_SOURCE, SOURCE_HELP, SOURCES

SOURCE_CHOICES = "; ".join(f"{name} = {text}" for name, text in SOURCE_HELP.items())


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="download GPT-2's pretrained weights (hf, openai or book files); list cached sizes",
        description="GPT-2's pretrained weights (book §5.5): fetch a size, list the cache.",
    )
    actions = parser.add_subparsers(dest="weights_action", metavar="ACTION")

    fetch = actions.add_parser("fetch", help="download (or verify cached) files of one size")
    fetch.add_argument("size", help="124M, 355M, 774M or 1558M")
    fetch.add_argument(
        "--source",
        choices=SOURCES,
        default=DEFAULT_SOURCE,
        help=f"where the weights come from (default: {DEFAULT_SOURCE}, because reading it needs "
        "only the base install on every Python/OS torch supports, with no TensorFlow and no "
        f"pickle); {SOURCE_CHOICES}. All three load to the same model",
    )
    fetch.add_argument(
        "--dir",
        default=None,
        help="models folder; openai/book files go to DIR/SIZE/ as in the book, hf files to "
        "DIR/models--.../ (default: the kit's cache; Hugging Face's cache for hf)",
    )
    fetch.add_argument("--quiet", "--no-progress", action="store_true", help="no progress bars")
    fetch.set_defaults(func=run_fetch)

    listing = actions.add_parser("list", help="which sizes are cached, per source, and where")
    listing.add_argument("--dir", default=None, help="models folder to look in (default: cache)")
    listing.add_argument(
        "--source",
        choices=SOURCES,
        default=None,
        help="list one source only (default: openai's table, then hf's and book's)",
    )
    listing.set_defaults(func=run_list)

    verify = actions.add_parser(
        "verify",
        help="re-hash cached weight files (every use trusts the check made on download)",
        description="Re-hash every cached GPT-2 file of the given sizes (default: all) and "
        "sources (default: every source with files cached) against its SHA-256 (or the "
        "size where no hash is published). A corrupt file is reported and is fetched again "
        "on its next use. Exit 1 when a file is corrupt or nothing is cached.",
    )
    verify.add_argument("sizes", nargs="*", metavar="SIZE", help="124M, 355M, 774M or 1558M")
    verify.add_argument("--source", choices=SOURCES, default=None, help="one source only")
    verify.add_argument("--dir", default=None, help="models folder to look in (default: cache)")
    verify.set_defaults(func=run_verify)

    parser.set_defaults(func=lambda args: parser.print_help(sys.stderr) or 2)


def run_fetch(args: argparse.Namespace) -> int:
    from ftkit.io.assets import AssetError
    from ftkit.io.gpt2 import check_model_size, fetch_gpt2

    try:
        size = check_model_size(args.size)
    except ValueError as err:
        print(f"ftkit weights fetch: {err}", file=sys.stderr)
        return 2
    source = getattr(args, "source", DEFAULT_SOURCE)
    try:
        folder = fetch_gpt2(size, args.dir, source=source, progress=not args.quiet)
    except AssetError as err:
        print(f"ftkit weights fetch: {err}", file=sys.stderr)
        print("finished files are kept; rerun the same command to resume", file=sys.stderr)
        return 1
    except ImportError as err:
        print(f"ftkit weights fetch: {err}", file=sys.stderr)
        return 1
    print(f"GPT-2 {size}: all files verified in {folder}")
    return 0


def _print_table(source: str, models_dir) -> None:
    from ftkit.io.gpt2 import GPT2_SIZES, source_files

    print(f"{'size':<6} {'files':>5} {'MB':>8}  folder")
    for size in GPT2_SIZES:
        folder, present, total = source_files(size, source, models_dir)
        megabytes = sum((folder / f).stat().st_size for f in present) / 1e6
        shown = f"{megabytes:8.1f}" if present else f"{'-':>8}"
        print(f"{size:<6} {len(present):>2}/{total} {shown}  {folder}")


def run_list(args: argparse.Namespace) -> int:
    only = getattr(args, "source", None)
    if only is not None:
        print(f"{only}: {SOURCE_HELP[only]}")
        _print_table(only, args.dir)
        return 0
    # OpenAI's table first (the book's source), then the others; each under its title.
    ordered = ["openai", *(source for source in SOURCES if source != "openai")]
    for i, source in enumerate(ordered):
        print(f"{'' if i == 0 else chr(10)}{source}: {SOURCE_HELP[source]}")
        _print_table(source, args.dir)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ftkit.io.gpt2 import GPT2_SIZES, check_model_size, source_files, verify_gpt2

    try:
        sizes = [check_model_size(size) for size in args.sizes] or list(GPT2_SIZES)
    except ValueError as err:
        print(f"ftkit weights verify: {err}", file=sys.stderr)
        return 2
    sources = [args.source] if args.source else list(SOURCES)
    checked = corrupt = 0
    for size in sizes:
        for source in sources:
            if not source_files(size, source, args.dir)[1]:
                continue  # nothing of this size from this source is cached
            for name, verdict in verify_gpt2(size, source, args.dir):
                checked += verdict != "missing"
                corrupt += verdict.startswith("corrupt")
                print(f"{verdict.split(':')[0].upper():<8} {size:<6} {source:<7} {name}")
                if verdict.startswith("corrupt"):
                    print(f"         {verdict.split(': ', 1)[1]}")
                    print(
                        f"         fetched again by `ftkit weights fetch {size} --source {source}`"
                    )
    if not checked:
        print("no cached GPT-2 files to verify", file=sys.stderr)
        return 1
    print(f"{checked} file(s) checked, {corrupt} corrupt")
    return 1 if corrupt else 0
