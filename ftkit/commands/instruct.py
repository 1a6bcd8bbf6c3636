"""`ftkit instruct train|respond|judge|all`: the book's chapter 7, with its exercises as options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    parser.add_argument(
        "--model",
        default="gpt2-medium (355M)",
        help="GPT-2 preset ('gpt2-medium (355M)', '124M', '774M', ...) or 'tiny' "
        "(a small random-init model for quick checks; not GPT-2). Default: the book's 355M",
    )
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (book: 2)")
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N entries (quick runs)"
    )
    parser.add_argument(
        "--style",
        choices=("alpaca", "phi3"),
        default="alpaca",
        help="prompt style: alpaca (book) or phi3 (exercise 7.1)",
    )
    parser.add_argument(
        "--mask-instruction",
        action="store_true",
        help="ignore the prompt's tokens in the loss (exercise 7.2)",
    )
    parser.add_argument(
        "--lora-rank",
        type=int,
        default=None,
        help="train LoRA adapters of this rank (exercise 7.4)",
    )
    parser.add_argument(
        "--lora-alpha", type=float, default=16.0, help="LoRA alpha (default 16, as the book)"
    )
    parser.add_argument(
        "--dataset",
        default="instruction",
        help="instruction (book, 1,100 entries), alpaca (Alpaca 52k, exercise 7.3) or the "
        "path of an Alpaca-format JSON file",
    )
    parser.add_argument(
        "--sort-by-length",
        action="store_true",
        help="batch entries of similar length together (less padding; not the book's order)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue training from the last epoch checkpoint in --out",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("."), help="folder for every file written (default: .)"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default="auto",
        help="where to train and generate (auto: cuda, then mps, then cpu)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="response length limit when generating (book: 256; 32 for the random-init tiny "
        "model, whose answers are gibberish anyway)",
    )
    parser.add_argument(
        "--judge-url",
        default="http://localhost:11434/api/chat",
        help="Ollama chat endpoint of the judge (book: localhost:11434)",
    )
    parser.add_argument("--judge-model", default="llama3", help="Ollama judge model (book: llama3)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ftkit.recipes import instruct as recipe

    try:
        if args.action in ("train", "all"):
            recipe.finetune(
                args.out,
                model=args.model,
                epochs=args.epochs,
                style=args.style,
                mask_instruction=args.mask_instruction,
                lora_rank=args.lora_rank,
                lora_alpha=args.lora_alpha,
                dataset=args.dataset,
                limit=args.limit,
                sort_by_length=args.sort_by_length,
                device=args.device,
                resume=args.resume,
            )
        if args.action in ("respond", "all"):
            if args.max_new_tokens is None:
                args.max_new_tokens = 32 if args.model == "tiny" else 256
            recipe.respond(
                args.out,
                model=args.model,
                device=args.device,
                max_new_tokens=args.max_new_tokens,
            )
        if args.action in ("judge", "all"):
            problem = recipe.judge_unavailable(args.judge_url, args.judge_model)
            if problem:
                if args.action == "all":
                    print(f"Skipping the judge step: {problem}")
                    return 0
                print(f"ftkit instruct judge: {problem}", file=sys.stderr)
                return 1
            recipe.judge(args.out, url=args.judge_url, judge_model=args.judge_model)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # Bad input, missing files, Ollama or asset problems: one clear line, no traceback.
        print(f"ftkit instruct {args.action}: {err}", file=sys.stderr)
        return 1
    return 0
