"""`ftkit data`: list the kit's data files and fetch them into the cache (mirror or download)."""

from __future__ import annotations

import argparse
import os
import sys

from ftkit.io import assets


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="list and fetch the data files (instruction data, SMS spam, GPT-2 BPE files)",
        description="Data files live in the kit's cache ($FTKIT_HOME or the user cache folder). "
        "They are copied from $FTKIT_DATA_MIRROR when it holds them, else downloaded "
        "(never when FTKIT_OFFLINE=1), and always checked against their SHA-256.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="{list,fetch}")
    lister = sub.add_parser(
        "list", help="show each data file, its size, and whether it is cached (hash checked)"
    )
    lister.set_defaults(func=run_list)
    fetcher = sub.add_parser("fetch", help="fetch data files into the cache and verify them")
    fetcher.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"assets to fetch (default: {', '.join(assets.DEFAULT_ASSETS)}); "
        f"known: {', '.join(assets.ASSETS)}",
    )
    fetcher.add_argument(
        "--all", action="store_true", help="every registered asset, alpaca-data included"
    )
    fetcher.add_argument("--no-progress", action="store_true", help="no download progress bars")
    fetcher.set_defaults(func=run_fetch)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def human_size(size: int | None) -> str:
    """Bytes as a short human string: 1042301 -> '1.0 MB'."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def render_table(rows: list[assets.AssetStatus]) -> str:
    """The `ftkit data list` table: name, size, state, path."""
    table = [("name", "size", "state", "path")]
    for row in rows:
        # Re-hashed just now; a corrupt file is replaced by the next fetch or use.
        state = "corrupt (refetched on next use)" if row.state == "corrupt" else row.state
        table.append((row.name, human_size(row.size), state, str(row.path)))
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    lines = [
        f"{name:<{widths[0]}}  {size:>{widths[1]}}  {state:<{widths[2]}}  {path}"
        for name, size, state, path in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def settings_lines() -> list[str]:
    mirror = os.environ.get(assets.ENV_MIRROR) or "(not set)"
    offline = os.environ.get(assets.ENV_OFFLINE) or "(not set)"
    return [
        f"cache:  {assets.cache_dir()}",
        f"mirror: {assets.ENV_MIRROR}={mirror}   {assets.ENV_OFFLINE}={offline}",
    ]


def run_list(args: argparse.Namespace) -> int:
    print("\n".join(settings_lines()))
    print()
    print(render_table(assets.list_assets()))
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    names = list(assets.ASSETS) if args.all else (args.names or list(assets.DEFAULT_ASSETS))
    failed = []
    for name in names:
        try:
            path = assets.fetch(name, progress=not args.no_progress)
        except assets.AssetError as err:
            failed.append(name)
            print(f"error: {name}: {err}", file=sys.stderr)
            continue
        print(f"ok  {name:<32} {path}")
    if failed:
        print(f"\n{len(failed)} of {len(names)} failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
