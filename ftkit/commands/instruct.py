"""`ftkit instruct train|respond|judge|all`: the book's chapter 7, with its exercises as options."""

from __future__ import annotations

import argparse
import sys

from ftkit.recipes.config import InstructConfig
from ftkit.recipes.settings import add_flags, from_args

ACTIONS = ("train", "respond", "judge", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "instruct",
        help="instruction-fine-tune GPT-2, write test-set responses, score them (book ch. 7)",
        description="Chapter 7 of the book: fine-tune GPT-2 355M on the 1,100 instruction "
        "entries (train), generate the test-set responses (respond), score them with a "
        "local Ollama judge (judge), or all three in a row (all). Defaults are the book's. "
        "Every step resumes where it stopped when rerun.",
    )
    parser.add_argument("action", choices=ACTIONS, help="what to run")
    add_flags(parser, InstructConfig)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ftkit.recipes import instruct, respond

    config = from_args(InstructConfig, args)
    try:
        if args.action in ("train", "all"):
            instruct.finetune(config=config)
        if args.action in ("respond", "all"):
            max_new_tokens = config.max_new_tokens
            if max_new_tokens is None:
                max_new_tokens = 32 if config.model == "tiny" else 256
            respond.respond(
                config.out,
                model=config.model,
                device=config.device,
                max_new_tokens=max_new_tokens,
                batch_size=config.respond_batch_size,
                exact=config.exact,
            )
        if args.action in ("judge", "all"):
            problem = respond.judge_unavailable(config.judge_url, config.judge_model)
            if problem:
                if args.action == "all":
                    print(f"Skipping the judge step: {problem}")
                    return 0
                print(f"ftkit instruct judge: {problem}", file=sys.stderr)
                return 1
            respond.judge(config.out, url=config.judge_url, judge_model=config.judge_model)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # Bad input, missing files, Ollama or asset problems: one clear line, no traceback.
        print(f"ftkit instruct {args.action}: {err}", file=sys.stderr)
        return 1
    return 0
