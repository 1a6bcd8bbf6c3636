"""`ftkit classify train|predict`: the book's chapter 6 spam classifier, with its exercises as options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="fine-tune GPT-2 as a spam classifier, and use it (book ch. 6)",
        description="Chapter 6 of the book: fine-tune GPT-2 124M on the balanced SMS spam "
        "data (train), then label texts with the saved classifier (predict). Defaults "
        "are the book's. Training resumes from its last epoch with --resume.",
    )
    sub = parser.add_subparsers(dest="classify_command", metavar="{train,predict}")

    trainer = sub.add_parser(
        "train",
        help="fine-tune and save the classifier, its plots and accuracies",
        description="Book hyper-parameters: AdamW lr 5e-5, weight decay 0.1, batch 8, "
        "5 epochs, eval every 50 steps over 5 batches, seed 123.",
    )
    trainer.add_argument(
        "--model",
        default="gpt2-small (124M)",
        help="GPT-2 preset ('gpt2-small' = '124M', '355M', ...) or 'tiny' (a small "
        "random-init model that needs no download; not GPT-2). Default: the book's 124M",
    )
    trainer.add_argument("--epochs", type=int, default=5, help="training epochs (book: 5)")
    trainer.add_argument(
        "--limit", type=int, default=None, help="use only the first N texts of each split"
    )
    trainer.add_argument(
        "--trainable",
        choices=("last_block", "all", "head"),
        default="last_block",
        help="what to fine-tune: last block + final norm + head (book), all (exercise 6.2), "
        "head only",
    )
    trainer.add_argument(
        "--token-position",
        choices=("last", "first"),
        default="last",
        help="which output token classifies: last (book) or first (exercise 6.3)",
    )
    trainer.add_argument(
        "--pad-to-context",
        action="store_true",
        help="pad every text to the model's context (1024) instead of the longest (exercise 6.1)",
    )
    trainer.add_argument(
        "--resume", action="store_true", help="continue from the last epoch checkpoint in --out"
    )
    trainer.add_argument(
        "--out",
        type=Path,
        default=Path("spam-classifier"),
        help="folder for every file written (default: ./spam-classifier)",
    )
    trainer.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default="auto",
        help="where to train (auto: cuda, then mps, then cpu)",
    )
    trainer.add_argument(
        "--models-dir", type=Path, default=None, help="where GPT-2 weights are cached"
    )
    trainer.add_argument("--no-progress", action="store_true", help="no progress bars")
    trainer.set_defaults(func=run_train)

    predictor = sub.add_parser("predict", help="label texts 'spam' or 'not spam'")
    predictor.add_argument(
        "--model-dir",
        type=Path,
        required=True,
        help="folder written by `ftkit classify train` (its --out)",
    )
    predictor.add_argument("texts", nargs="+", metavar="TEXT", help="text(s) to classify")
    predictor.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    predictor.set_defaults(func=run_predict)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _say(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message)  # keeps progress bars intact


def run_train(args: argparse.Namespace) -> int:
    from ftkit.recipes.classify import train

    try:
        train(
            args.out,
            model=args.model,
            epochs=args.epochs,
            limit=args.limit,
            trainable=args.trainable,
            token_position=args.token_position,
            pad_to_context=args.pad_to_context,
            resume=args.resume,
            device=args.device,
            models_dir=args.models_dir,
            progress=not args.no_progress,
            say=_say,
        )
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"ftkit classify train: {err}", file=sys.stderr)
        return 1
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from ftkit.recipes.classify import predict

    try:
        labels = predict(args.model_dir, args.texts, device=args.device)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"ftkit classify predict: {err}", file=sys.stderr)
        return 1
    for label in labels:
        print(label)
    return 0
