"""Exercises: instruction data — format entries as prompts, split, tokenize (book §7.2-7.3).

Items of `InstructionDataset` are plain token-id lists; with `mask_instruction=True`
(exercise 7.2) they are `InstructionItem(prompt_length, token_ids)` pairs, where
`prompt_length` is the token count of `format_input(entry)` alone.
`pytest --impl exercises tests/book/test_instruction_data.py` shows what is left to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from exercises.collate import InstructionItem

ENTRY_KEYS = ("instruction", "input", "output")
PROMPT_STYLES = ("alpaca", "phi3")
ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)


def format_input(entry: dict[str, str], *, style: str = "alpaca") -> str:
    """The prompt: instruction, plus the input section only when the input is not empty (book §7.2)."""
    raise NotImplementedError(
        "ALPACA_PREAMBLE + '\\n\\n### Instruction:\\n' + instruction, then "
        "'\\n\\n### Input:\\n' + input only if input is non-empty (book §7.2; phi3: exercise 7.1)"
    )


def split_data(
    data: Sequence[Any], train_frac: float = 0.85, test_frac: float = 0.10
) -> tuple[list[Any], list[Any], list[Any]]:
    """Split in order into (train, test, validation); validation gets the remainder (book §7.2)."""
    raise NotImplementedError(
        "train = first int(n * train_frac), test = next int(n * test_frac), validation = "
        "the rest (book §7.2)"
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
        *,
        style: str = "alpaca",
        mask_instruction: bool = False,
    ):
        raise NotImplementedError(
            "tokenize format_input(entry) + f'\\n\\n### Response:\\n{entry[\"output\"]}' for "
            "every entry once, here (book §7.3); phi3's response is "
            "'\\n<|assistant|>:\\n' + output (exercise 7.1); keep "
            "len(tokenizer.encode(prompt)) too for exercise 7.2"
        )

    def __getitem__(self, index: int) -> list[int] | InstructionItem:
        raise NotImplementedError(
            "return the pre-tokenized ids of entry `index` (an InstructionItem when masking) "
            "(book §7.3)"
        )

    def __len__(self) -> int:
        raise NotImplementedError("the number of entries (book §7.3)")
