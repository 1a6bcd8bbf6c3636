"""`ftkit data` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="(not built yet)")
    parser.set_defaults(func=lambda args: print("ftkit data: not built yet") or 2)
