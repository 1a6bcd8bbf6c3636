"""Exercises: instruction data — load, format as prompts, split, tokenize, batch (book §7.2–7.4).

Items of `InstructionDataset` are plain token-id lists; with `mask_instruction=True`
(exercise 7.2) they are `InstructionItem(prompt_length, token_ids)` pairs, where
`prompt_length` is the token count of `format_input(entry)` alone.
`pytest --impl exercises tests/book/test_instruction_data.py` shows what is left to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from exercises.collate import (  # noqa: F401  (your collate: what the loaders batch with)
    IGNORE_INDEX,
    PAD_TOKEN_ID,
    InstructionItem,
    custom_collate_fn,
)
from ftkit.io.assets import fetch  # noqa: F401  (fetch("instruction-data") gives the file)

ENTRY_KEYS = ("instruction", "input", "output")
PROMPT_STYLES = ("alpaca", "phi3")
ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)


def load_instruction_data(path: str | Path | None = None) -> list[dict[str, str]]:
    """Read and validate the instruction data set, a JSON list of entries (book §7.2).

    Without `path` the book's 1100-entry file is fetched (verified) via the kit's assets.
    """
    raise NotImplementedError(
        "json-load the file (default fetch('instruction-data')); check every entry has string "
        "instruction/input/output and name the entry index in errors (book §7.2)"
    )


def format_input(entry: dict[str, str], style: str = "alpaca") -> str:
    """The prompt: instruction, plus the input section only when the input is not empty (book §7.2)."""
    raise NotImplementedError(
        "ALPACA_PREAMBLE + '\\n\\n### Instruction:\\n' + instruction, then "
        "'\\n\\n### Input:\\n' + input only if input is non-empty (book §7.2; phi3: exercise 7.1)"
    )


def format_response(entry: dict[str, str], style: str = "alpaca") -> str:
    """The response part appended to the prompt for training: header + desired output (book §7.2)."""
    raise NotImplementedError(
        "'\\n\\n### Response:\\n' + output for alpaca; '\\n<|assistant|>:\\n' + output for "
        "phi3 (book §7.2, exercise 7.1)"
    )


def split_data(
    data: Sequence[Any], train_frac: float = 0.85, test_frac: float = 0.10
) -> tuple[list[Any], list[Any], list[Any]]:
    """Split in order into (train, test, validation); validation gets the remainder (book §7.2)."""
    raise NotImplementedError(
        "train = first int(n * train_frac), test = next int(n * test_frac), validation = "
        "the rest; reject fractions outside [0, 1] or summing above 1 (book §7.2)"
    )


class InstructionDataset(Dataset):
    """Pre-tokenized prompt + response texts; items are token-id lists (book §7.3).

    With `mask_instruction=True` items are `InstructionItem(prompt_length, token_ids)`
    so the collate function can mask the prompt's targets (exercise 7.2).
    """

    def __init__(
        self,
        data: Sequence[dict[str, str]],
        tokenizer: Any,
        style: str = "alpaca",
        mask_instruction: bool = False,
    ):
        raise NotImplementedError(
            "tokenize format_input(entry) + format_response(entry) for every entry once, here "
            "(book §7.3); keep len(tokenizer.encode(prompt)) too for exercise 7.2"
        )

    def __getitem__(self, index: int) -> list[int] | InstructionItem:
        raise NotImplementedError(
            "return the pre-tokenized ids of entry `index` (an InstructionItem when masking) "
            "(book §7.3)"
        )

    def __len__(self) -> int:
        raise NotImplementedError("the number of entries (book §7.3)")


def create_instruction_loaders(
    train_data: Sequence[dict[str, str]],
    val_data: Sequence[dict[str, str]],
    test_data: Sequence[dict[str, str]],
    tokenizer: Any,
    batch_size: int = 8,
    num_workers: int = 0,
    allowed_max_length: int | None = 1024,
    device: str = "cpu",
    style: str = "alpaca",
    mask_instruction: bool = False,
    seed: int | None = 123,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train/validation/test loaders: train shuffled with drop_last, others in order (book §7.3).

    `torch.manual_seed(seed)` is set first, as the book does, so the train order is the book's.
    """
    raise NotImplementedError(
        "torch.manual_seed(seed); collate = functools.partial(custom_collate_fn, device=..., "
        "allowed_max_length=...); train: shuffle=True, drop_last=True; val/test: neither "
        "(book §7.3)"
    )
