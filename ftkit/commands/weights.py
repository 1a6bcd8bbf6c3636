"""`ftkit weights` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="(not built yet)")
    parser.set_defaults(func=lambda args: print("ftkit weights: not built yet") or 2)
