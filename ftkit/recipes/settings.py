"""Each recipe setting declared once: a dataclass field whose metadata makes its CLI flag and resume rule.

`setting(default, "help", resume=True)` declares a field of a recipe's config
dataclass; `add_flags` turns every field with help text into an argparse flag
(`lora_rank` -> `--lora-rank`), `resume_keys` lists the fields a checkpoint must
agree on, and `from_args`/`configure` build the config from parsed flags or keywords.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


def setting(
    default: Any,
    help: str | None = None,
    *,
    resume: bool = False,
    type: Any = None,
    choices: Sequence[str] | None = None,
    flag: str | None = None,
    steps: Sequence[str] | None = None,
) -> Any:
    """A config field: `help` makes it a CLI flag, `resume=True` makes a checkpoint check it.

    A bool with default False becomes a `store_true` flag; one with default True needs
    `flag` (e.g. `--no-progress`) and becomes `store_false`. `steps` names the
    subcommands whose flag it is (`train`, `respond`, ...; None: every one).
    """
    meta = {
        "help": help,
        "resume": resume,
        "type": type,
        "choices": choices,
        "flag": flag,
        "steps": steps,
    }
    return dataclasses.field(default=default, metadata=meta)


def resume_keys(config_cls: type) -> tuple[str, ...]:
    """The settings a checkpoint and the run resuming from it must share."""
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("resume"))


def add_flags(parser: argparse.ArgumentParser, config_cls: type, step: str | None = None) -> None:
    """One argparse flag for each field of `config_cls` that has help text (and is `step`'s).

    `step` None or "all" takes every flag; a named step only the fields whose `steps` list
    it (or list none).
    """
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        if not meta.get("help"):
            continue  # a setting of the Python API only
        steps = meta.get("steps")
        if step not in (None, "all") and steps is not None and step not in steps:
            continue  # another subcommand's flag
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            action = "store_false" if f.default else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, help=meta["help"])
            continue
        kind = meta.get("type") or (type(f.default) if f.default is not None else None)
        parser.add_argument(
            flag,
            dest=f.name,
            type=kind,
            default=f.default,
            choices=meta.get("choices"),
            help=meta["help"],
        )


def add_resume_alias(parser: argparse.ArgumentParser) -> None:
    """`--resume`: accepted for older scripts; continuing is what a rerun does by default now."""
    parser.add_argument(
        "--resume",
        dest="resume",
        action="store_const",
        const=True,
        default=argparse.SUPPRESS,  # leaves --restart's default alone
        help="continue from the last epoch checkpoint in --out (the default; kept for "
        "older scripts)",
    )


def from_args(config_cls: type[C], args: argparse.Namespace) -> C:
    """The config the parsed flags ask for (fields without a flag keep their defaults)."""
    names = [f.name for f in dataclasses.fields(config_cls)]
    return config_cls(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def configure(
    config_cls: type[C], config: C | None, overrides: dict[str, Any], out_dir: Any = None
) -> C:
    """`config` (default: the book's settings) with keyword `overrides` and `out_dir` as `out`.

    Unknown setting names and fewer than one epoch are clear errors.
    """
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown {config_cls.__name__} settings {unknown}; known: {sorted(names)}")
    if out_dir is not None:
        overrides = {**overrides, "out": Path(out_dir)}
    result = dataclasses.replace(config if config is not None else config_cls(), **overrides)
    if getattr(result, "epochs", 1) < 1:
        raise ValueError(f"epochs={result.epochs}: train at least one epoch")
    return result


def run_settings(config: Any, *, preset: str, backend: Any, **resolved: Any) -> dict[str, Any]:
    """The run's resolved description: what its config.json and checkpoint record.

    The config's resume fields as given, then what they resolve to: the canonical model
    preset, the backend's precision ("auto" decided) and code path (exact or fast: a run
    never mixes the two), and the recipe's own `resolved` values (a padded length, ...).
    A resume compares the `resume_keys` of two such descriptions.
    """
    return {
        **{key: getattr(config, key) for key in resume_keys(type(config))},
        "model": preset,
        "epochs": config.epochs,
        "precision": backend.precision,
        "path": backend.path,
        **resolved,
    }
