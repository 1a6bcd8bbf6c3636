"""`ftkit instruct train|respond|judge|all`: the book's chapter 7, with its exercises as options."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ftkit.engine.launch import add_flags as add_distributed_flags
from ftkit.recipes.config import InstructConfig
from ftkit.recipes.settings import add_flags, add_resume_alias, from_args

STEPS = {
    "train": "fine-tune GPT-2 on the instruction data and save the model (§7.2-7.6)",
    "respond": "write the fine-tuned model's responses to the test set (§7.7)",
    "judge": "score the responses with a local Ollama judge model (§7.8)",
    "all": "train, respond and judge in a row (every step's flags)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "instruct",
        help="instruction-fine-tune GPT-2, write test-set responses, score them (book ch. 7)",
        description="Chapter 7 of the book: fine-tune GPT-2 355M on the 1,100 instruction "
        "entries (train), generate the test-set responses (respond), score them with a "
        "local Ollama judge (judge), or all three in a row (all). Defaults are the book's. "
        "Rerun the same command after a stop and every step continues where it stopped: "
        "training from its last epoch checkpoint (--restart starts over), responses and "
        "scores from the entries not yet done.",
    )
    sub = parser.add_subparsers(dest="action", metavar="{train,respond,judge,all}")
    for action, help_text in STEPS.items():
        step = sub.add_parser(action, help=help_text, description=help_text)
        add_flags(step, InstructConfig, step=action)  # each subcommand its own flags
        if action in ("train", "all"):
            add_resume_alias(step)
        if action != "judge":  # the judge is one HTTP client: no processes to start
            add_distributed_flags(step)
        step.set_defaults(func=run)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run(args: argparse.Namespace) -> int:
    from ftkit.engine.distributed import session_from_args
    from ftkit.engine.launch import launch, launched

    if (
        getattr(args, "nproc_per_node", None) and not launched()
    ):  # the shortcut: start torchrun with these flags
        try:
            return launch(
                args.argv,
                args.nproc_per_node,
                batch_size=from_args(InstructConfig, args).batch_size,
                grad_accum=args.grad_accum,
            )
        except ValueError as err:
            print(f"ftkit instruct {args.action}: {err}", file=sys.stderr)
            return 1
    try:
        with session_from_args(args) as dist:
            return _run(args, dist)
    except (ValueError, RuntimeError) as err:  # a bad --backend/--strategy, a failed rank
        print(f"ftkit instruct {args.action}: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, dist) -> int:
    from ftkit.engine.trainer import TrainingInterrupted
    from ftkit.recipes import instruct, respond
    from ftkit.recipes.runtime import (
        OutDirError,
        check_out_dir,
        ensure_weights,
        run_dir,
        setup_interrupt_message,
    )

    config = from_args(InstructConfig, args)
    step, out = None, None
    try:
        planned = run_dir("instruct", config.model, config.out)
        if args.action in ("train", "all"):  # GPT-2's weights, or the hint: before any folder
            checkpoint = instruct.output_paths(planned, config.model)["checkpoint"]
            ensure_weights(config.model, models_dir=config.models_dir, checkpoint=checkpoint)
        out = check_out_dir(planned)  # before any work
        if args.action in ("train", "all"):
            step = "train"
            instruct.finetune(config=dataclasses.replace(config, out=out), dist=dist)
        if args.action in ("respond", "all"):
            step = "respond"
            max_new_tokens = config.max_new_tokens
            if max_new_tokens is None:
                max_new_tokens = 32 if config.model == "tiny" else 256
            respond.respond(
                out,
                model=config.model,
                device=config.device,
                max_new_tokens=max_new_tokens,
                progress=config.progress,
                dist=dist,
                batch_size=config.respond_batch_size,
                exact=config.exact,
            )
        if args.action in ("judge", "all"):
            step = "judge"
            # the judge is one HTTP client: rank 0's
            return dist.on_main(judge_step, out, config, args.action) or 0
    except OutDirError as err:
        print(f"ftkit instruct {args.action}: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # Bad input, missing files, Ollama or asset problems: one clear line, no traceback.
        print(f"ftkit instruct {args.action}: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted:
        raise  # its message says what is saved and what a rerun does
    except KeyboardInterrupt as err:
        if step == "train" and out is not None:
            checkpoint = instruct.output_paths(out, config.model)["checkpoint"]
            err.message = setup_interrupt_message(checkpoint, resume=config.resume)
        else:
            err.message = INTERRUPTED.get(step)
        raise
    return 0


def judge_step(out: Path, config: InstructConfig, action: str) -> int:
    """Score the responses with the judge model (§7.8), or say why the judge is unavailable."""
    from ftkit.recipes import respond

    problem = respond.judge_unavailable(config.judge_url, config.judge_model)
    if problem:
        if action == "all":
            print(f"Skipping the judge step: {problem}")
            return 0
        print(f"ftkit instruct judge: {problem}", file=sys.stderr)
        return 1
    respond.judge(
        out,
        url=config.judge_url,
        judge_model=config.judge_model,
        timeout=config.judge_timeout,
        progress=config.progress,
    )
    return 0


# What rerunning the same command does after Ctrl-C while responding or judging.
INTERRUPTED = {
    "respond": "the responses written so far are kept in --out; rerunning the same command "
    "generates only the missing ones",
    "judge": "the scores received so far are kept in scores.jsonl in --out; rerunning the same "
    "command asks only for the missing ones",
}
