"""Each recipe's settings, declared once: the CLI flags and the resume-key set derive from them.

A field's default is the book's value; `setting(..., help)` makes it a flag of
`ftkit classify train` / `ftkit instruct`, `resume=True` a setting that a checkpoint
and the run resuming from it must share (see `ftkit.recipes.settings`). This module
imports no torch, so `ftkit --help` stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ftkit.choices import DEVICES, JUDGE_URL, PRECISIONS, STYLES, TOKEN_POSITIONS, TRAINABLE
from ftkit.recipes.settings import setting

RUNS_DIR = Path("runs")
OUT_HELP = (
    "folder for every file written (default: runs/{recipe}-MODEL, e.g. runs/{recipe}-"
    "{example}); checked before any work"
)
RESTART_HELP = (
    "start over: ignore the last epoch checkpoint in --out and overwrite it (default: a "
    "rerun continues from it when the settings match)"
)


# The `ftkit instruct` subcommands a flag belongs to (`setting(steps=...)`; none: every one).
TRAIN, RESPOND, JUDGE = ("train",), ("respond",), ("judge",)
TRAIN_RESPOND = ("train", "respond")


def model_setting(default: str, presets: str, tiny: str) -> str:
    """The `--model` setting: a GPT-2 preset or the random-init `tiny` model; checkpoints must agree."""
    size = default.partition("(")[2].rstrip(")")
    return setting(
        default,
        f"GPT-2 preset ({presets}) or 'tiny' (a small random-init model {tiny}; not GPT-2). "
        f"Default: the book's {size}",
        resume=True,
    )


def exact_setting() -> bool:
    """The `--exact` setting: the book's own code path instead of the fast one; checkpoints must agree."""
    return setting(
        False,
        "run the book's own code (its loop and step functions, float32) for the book's exact "
        "numbers; default: the fast path (fused kernels, fused AdamW, bf16 where the hardware "
        "has it)",
        resume=True,
        steps=TRAIN_RESPOND,
    )


def precision_setting() -> str:
    """The `--precision` setting of the fast path; the resolved value is what a checkpoint records."""
    return setting(
        "auto",
        "number format of the fast path: auto (bf16 on CPUs with AVX-512-BF16/AMX and CUDA "
        "GPUs with bf16, else fp32), bf16 or fp32; --exact always runs fp32",
        resume=True,
        choices=PRECISIONS,
        steps=TRAIN,
    )


def limit_setting(what: str) -> int | None:
    """The `--limit` setting: train on the first N texts only, for quick runs; checkpoints must agree."""
    return setting(None, f"use only the first N {what}", resume=True, type=int, steps=TRAIN)


@dataclass(frozen=True)
class RunConfig:
    """The settings both recipes share, with the book's values (§5.2, §6.7, §7.6)."""

    exact: bool = exact_setting()
    precision: str = precision_setting()
    resume: bool = setting(True, RESTART_HELP, flag="--restart", steps=TRAIN)
    models_dir: Path | None = setting(
        None, "where GPT-2 weights are cached", type=Path, steps=TRAIN
    )
    progress: bool = setting(True, "no progress bars", flag="--no-progress")
    # The book's AdamW and loop settings, the same in chapters 6 and 7 (but eval_freq).
    batch_size: int = setting(8, resume=True)
    lr: float = setting(5e-5, resume=True)
    weight_decay: float = setting(0.1, resume=True)
    eval_iter: int = setting(5, resume=True)
    seed: int = setting(123, resume=True)


@dataclass(frozen=True)
class ClassifyConfig(RunConfig):
    """Every setting of `ftkit classify train`, with the book's values as defaults (§6.2-6.7)."""

    # The book's CHOOSE_MODEL in §6.4.
    model: str = model_setting(
        "gpt2-small (124M)", "'gpt2-small' = '124M', '355M', ...", "that needs no download"
    )
    epochs: int = setting(5, "training epochs (book: 5)")
    limit: int | None = limit_setting("texts of each split")
    trainable: str = setting(
        "last_block",
        "what to fine-tune: last block + final norm + head (book), all (exercise 6.2), head only",
        resume=True,
        choices=TRAINABLE,
    )
    token_position: str = setting(
        "last",
        "which output token classifies: last (book) or first (exercise 6.3)",
        resume=True,
        choices=TOKEN_POSITIONS,
    )
    pad_to_context: bool = setting(
        False,
        "pad every text to the model's context (1024) instead of the longest (exercise 6.1)",
        resume=True,
    )
    out: Path | None = setting(
        None, OUT_HELP.format(recipe="classify", example="gpt2-small"), type=Path
    )
    device: str = setting(
        "auto", "where to train (auto: cuda, then mps, then cpu)", choices=DEVICES
    )
    eval_freq: int = setting(50, resume=True)


@dataclass(frozen=True)
class InstructConfig(RunConfig):
    """Every setting of `ftkit instruct`, with the book's values as defaults (§7.2-7.8)."""

    # The book's CHOOSE_MODEL in §7.5.
    model: str = model_setting(
        "gpt2-medium (355M)", "'gpt2-medium (355M)', '124M', '774M', ...", "for quick checks"
    )
    epochs: int = setting(2, "training epochs (book: 2)", steps=TRAIN)
    limit: int | None = limit_setting("entries (quick runs)")
    style: str = setting(
        "alpaca",
        "prompt style: alpaca (book) or phi3 (exercise 7.1)",
        resume=True,
        choices=STYLES,
        steps=TRAIN,
    )
    mask_instruction: bool = setting(
        False, "ignore the prompt's tokens in the loss (exercise 7.2)", resume=True, steps=TRAIN
    )
    lora_rank: int | None = setting(
        None, "train LoRA adapters of this rank (exercise 7.4)", resume=True, type=int, steps=TRAIN
    )
    # The book's exercise 7.4 solution: rank 16, alpha 16.
    lora_alpha: float = setting(
        16.0, "LoRA alpha (default 16, as the book)", resume=True, steps=TRAIN
    )
    dataset: str = setting(
        "instruction",
        "instruction (book, 1,100 entries), alpaca (Alpaca 52k, exercise 7.3) or the path "
        "of an Alpaca-format JSON file",
        resume=True,
        steps=TRAIN,
    )
    sort_by_length: bool = setting(
        False,
        "batch entries of similar length together (less padding; not the book's order)",
        resume=True,
        steps=TRAIN,
    )
    respond_batch_size: int = setting(
        8,
        "respond: test entries generated at once (KV cache; the book: one at a time, as "
        "--exact does)",
        flag="--batch-size",
        steps=RESPOND,
    )
    out: Path | None = setting(
        None, OUT_HELP.format(recipe="instruct", example="gpt2-medium"), type=Path
    )
    device: str = setting(
        "auto",
        "where to train and generate (auto: cuda, then mps, then cpu)",
        choices=DEVICES,
        steps=TRAIN_RESPOND,
    )
    max_new_tokens: int | None = setting(
        None,
        "response length limit when generating (book: 256; 32 for the random-init tiny "
        "model, whose answers are gibberish anyway)",
        type=int,
        steps=RESPOND,
    )
    judge_url: str = setting(
        JUDGE_URL,
        "Ollama chat endpoint of the judge (book: localhost:11434)",
        steps=JUDGE,
    )
    judge_model: str = setting("llama3", "Ollama judge model (book: llama3)", steps=JUDGE)
    judge_timeout: float = setting(
        120.0,
        "seconds to wait for each judge answer before retrying it (3 retries; a slow "
        "machine or a large judge model may need more)",
        type=float,
        steps=JUDGE,
    )
    eval_freq: int = setting(5, resume=True)
    # None: the model's context for the book's data (§7.3), 512 for Alpaca-format files.
    allowed_max_length: int | None = setting(None, resume=True)
