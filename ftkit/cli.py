"""`ftkit`: the kit's command line. Each subcommand lives in `ftkit/commands/<name>.py`.

A command module defines `register(subparsers)`, which adds its parser and sets
`func` (called with the parsed args, returning an exit code). A command whose work
survives Ctrl-C sets `on_interrupt` (what a rerun will do); an exception raised by
the interrupted work may carry a more exact `message` (see `ftkit.engine.trainer`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("init", "data", "weights", "classify", "instruct", "bench", "check", "doctor")


class Parser(argparse.ArgumentParser):
    """argparse, but an unknown option is reported by the (sub)command it was given to.

    Plain argparse lets the top-level parser report a subcommand's unknown option,
    with `usage: ftkit [-h] COMMAND ...`; here `ftkit instruct train --bogus` prints
    `usage: ftkit instruct train ...`. A parser whose first positional is an action
    (`action_dest`, e.g. `instruct`'s train/respond/...) names it in the usage.
    """

    action_dest: str | None = None

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            action = getattr(parsed, self.action_dest, None) if self.action_dest else None
            if action:
                self.prog = f"{self.prog} {action}"
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ftkit",
        description="Fine-tune GPT-2 as in 'Build a Large Language Model (From Scratch)', ch. 6-7.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"ftkit.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for `--nproc-per-node`'s relaunch
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    from ftkit.io.assets import CacheDirError

    try:
        return int(args.func(args) or 0)
    except CacheDirError as err:  # a setting of the environment, whatever the command
        print(f"ftkit {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        # Say what a rerun will do only where it is true: the command (or the work
        # that was interrupted) knows; others (`ftkit check`, ...) just stop.
        message = getattr(err, "message", None) or getattr(args, "on_interrupt", None)
        print(f"\ninterrupted{'; ' + message if message else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
