"""`ftkit init [DIR]`: start a learner's own folder — the exercise stubs, a README, a config.

The stubs are the kit's `exercises/` modules in the book's layout (`model.py`, `collate.py`,
...), as plain files that import each other by file name (`from collate import ...`, the way
`ftkit check` loads a folder). `ftkit.toml` makes `ftkit check`, run anywhere inside the
folder, check it with no `--impl`. Running init again adds what is missing and never
overwrites a file that is there.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

CONFIG = "ftkit.toml"
DEFAULT_DIR = "llm-exercises"
CONFIG_TEXT = """\
# `ftkit check` run in this folder (or below it) checks the code here: see README.md.
[check]
impl = "."
"""
README_TEXT = """\
# My chapter 6-7 code (started with `ftkit init`)

One file per book stage, each function a stub that raises `NotImplementedError` with a hint
and the book section. The loop:

    ftkit check                 # every stage: solved / failing / not started, and what is next
    ftkit check --stage collate # one stage (model, generation, training, data, collate, ...)
    ftkit check --watch         # rerun a stage each time you save one of its files

`ftkit check` exits 0 while nothing is failing (stubs you have not started do not fail it),
1 when an exercise you wrote fails. `ftkit.toml` tells it to check this folder; elsewhere,
`ftkit check --impl PATH` checks any file, notebook or folder. `ftkit init` again restores a
deleted file and never overwrites one you have written.
"""
# `from exercises.collate import X` in the kit's stubs: here the sibling file.
KIT_IMPORT = re.compile(r"^(\s*)from exercises\.(\w+) import", re.MULTILINE)
# How a kit stub's docstring says to check it, in the kit's checkout.
KIT_CHECK = re.compile(r"pytest --impl exercises tests/book/test_\w+\.py")
# The book's tooling the stubs import from the kit's reference code: `import ftkit` first
# makes `reference` importable when a file is run on its own (an installed kit ships it).
REFERENCE_IMPORT = re.compile(r"^from reference\.", re.MULTILINE)
IMPORT_FTKIT = "import ftkit  # noqa: F401  (makes `reference`, the kit's copy of the book's code, importable)\n"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init",
        help="start your own folder of exercise stubs (then `ftkit check` inside it)",
        description="Write the exercise stubs (book layout), a README of the loop and "
        f"{CONFIG} into DIR; files already there are kept as they are.",
    )
    parser.add_argument(
        "dir", nargs="?", default=DEFAULT_DIR, type=Path, help=f"default: ./{DEFAULT_DIR}"
    )
    parser.set_defaults(func=run)


def learner_copy(stub: str) -> str:
    """A kit stub as a file of the learner's folder (imports by sibling file name)."""
    text = KIT_CHECK.sub("ftkit check", KIT_IMPORT.sub(r"\1from \2 import", stub))
    first = REFERENCE_IMPORT.search(text)
    if first:
        text = text[: first.start()] + IMPORT_FTKIT + text[first.start() :]
    return text


def files_to_write() -> dict[str, str]:
    """File name -> text, for a learner's folder."""
    from ftkit.layout import EXERCISES

    files = {
        path.name: learner_copy(path.read_text(encoding="utf-8"))
        for path in sorted(EXERCISES.glob("*.py"))
        if not path.name.startswith("_")
    }
    files["README.md"] = README_TEXT
    files[CONFIG] = CONFIG_TEXT
    return files


def run(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    if folder.exists() and not folder.is_dir():
        print(f"ftkit init: {folder} is a file, not a folder", file=sys.stderr)
        return 2
    written, kept = [], []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files_to_write().items():
            path = folder / name
            if path.exists():
                kept.append(name)
                continue
            path.write_text(text, encoding="utf-8")
            written.append(name)
    except OSError as err:
        print(f"ftkit init: cannot write into {folder}: {err.strerror or err}", file=sys.stderr)
        return 1
    if written:
        print(f"wrote {len(written)} files into {folder}: {', '.join(written)}")
    if kept:
        print(f"kept {len(kept)} files already there (not overwritten): {', '.join(kept)}")
    print(f"next: cd {folder} && ftkit check   (README.md there has the loop)")
    return 0
