"""`ftkit classify train|predict`: the book's chapter 6 spam classifier, with its exercises as options."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ftkit.choices import DEVICES
from ftkit.engine.launch import add_flags as add_distributed_flags
from ftkit.recipes.config import ClassifyConfig
from ftkit.recipes.settings import add_flags, add_resume_alias, from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="fine-tune GPT-2 as a spam classifier, and use it (book ch. 6)",
        description="Chapter 6 of the book: fine-tune GPT-2 124M on the balanced SMS spam "
        "data (train), then label texts with the saved classifier (predict). Defaults "
        "are the book's. Rerun the same train command after a stop and it continues from its "
        "last epoch checkpoint (--restart starts over).",
    )
    sub = parser.add_subparsers(dest="classify_command", metavar="{train,predict}")

    trainer = sub.add_parser(
        "train",
        help="fine-tune and save the classifier, its plots and accuracies",
        description="Book hyper-parameters: AdamW lr 5e-5, weight decay 0.1, batch 8, "
        "5 epochs, eval every 50 steps over 5 batches, seed 123.",
    )
    add_flags(trainer, ClassifyConfig)
    add_resume_alias(trainer)
    add_distributed_flags(trainer)
    trainer.set_defaults(func=run_train)

    predictor = sub.add_parser("predict", help="label texts 'spam' or 'not spam'")
    predictor.add_argument(
        "--model-dir",
        type=Path,
        required=True,
        help="folder written by `ftkit classify train` (its --out)",
    )
    predictor.add_argument("texts", nargs="+", metavar="TEXT", help="text(s) to classify")
    predictor.add_argument("--device", choices=DEVICES, default="auto")
    predictor.set_defaults(func=run_predict)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _say(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message)  # keeps progress bars intact


def run_train(args: argparse.Namespace) -> int:
    from ftkit.engine.distributed import session_from_args
    from ftkit.engine.launch import launch, launched
    from ftkit.engine.trainer import TrainingInterrupted
    from ftkit.recipes.classify import CHECKPOINT_FILE, train
    from ftkit.recipes.runtime import (
        OutDirError,
        check_out_dir,
        ensure_weights,
        run_dir,
        setup_interrupt_message,
    )

    config = from_args(ClassifyConfig, args)
    if args.nproc_per_node and not launched():  # the shortcut: start torchrun with these flags
        try:
            return launch(
                args.argv,
                args.nproc_per_node,
                batch_size=config.batch_size,
                grad_accum=args.grad_accum,
            )
        except ValueError as err:
            print(f"ftkit classify train: {err}", file=sys.stderr)
            return 1
    out = None
    try:
        planned = run_dir("classify", config.model, config.out)  # GPT-2's weights before any folder
        ensure_weights(
            config.model, models_dir=config.models_dir, checkpoint=planned / CHECKPOINT_FILE
        )
        out = check_out_dir(planned)  # before any work
        with session_from_args(args) as dist:
            train(config=dataclasses.replace(config, out=out), say=_say, dist=dist)
    except OutDirError as err:
        print(f"ftkit classify train: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"ftkit classify train: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted:
        raise  # its message says what is saved and what a rerun does
    except KeyboardInterrupt as err:
        if out is not None:
            err.message = setup_interrupt_message(out / CHECKPOINT_FILE, resume=config.resume)
        raise
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from ftkit.recipes.classify import predict

    try:
        labels = predict(args.model_dir, args.texts, device=args.device)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"ftkit classify predict: {err}", file=sys.stderr)
        return 1
    for label in labels:
        print(label if label is not None else EMPTY_MARK)
    empty = [i for i, label in enumerate(labels, 1) if label is None]
    if empty:
        print(f"ftkit classify predict: text(s) {empty} are empty: not classified", file=sys.stderr)
        return 1
    return 0


EMPTY_MARK = "(empty text: not classified)"
