"""Exercises: batching instruction examples — pad, shift, mask (book §7.3, exercise 7.2).

Fill in each function; `pytest --impl exercises tests/book/test_collate.py` tells you
what is still missing. An item is a plain list of token ids, or (exercise 7.2) an
`InstructionItem(prompt_length, token_ids)` pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

PAD_TOKEN_ID = 50256  # GPT-2's <|endoftext|>, which doubles as padding (book §7.3)
IGNORE_INDEX = -100  # the default ignore_index of torch.nn.functional.cross_entropy


class InstructionItem(NamedTuple):
    """One example with its prompt length, for masking the instruction (book exercise 7.2)."""

    prompt_length: int
    token_ids: list[int]


def custom_collate_draft_1(
    batch: Sequence[Sequence[int]], pad_token_id: int = PAD_TOKEN_ID, device: str = "cpu"
) -> torch.Tensor:
    """Pad a batch of token lists to equal length; return the inputs only (book §7.3, draft 1)."""
    raise NotImplementedError(
        "pad every item with pad_token_id to the longest length + 1, drop the last column, "
        "stack into one tensor on `device` (book §7.3)"
    )


def custom_collate_draft_2(
    batch: Sequence[Sequence[int]], pad_token_id: int = PAD_TOKEN_ID, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad and return (inputs, targets), the targets shifted one position right (book §7.3, draft 2)."""
    raise NotImplementedError(
        "as draft 1, and also return targets = padded[1:] of each row (book §7.3)"
    )


def custom_collate_fn(
    batch: Sequence[Sequence[int]] | Sequence[InstructionItem],
    pad_token_id: int = PAD_TOKEN_ID,
    ignore_index: int = IGNORE_INDEX,
    allowed_max_length: int | None = None,
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad, shift, mask all padding targets but the first with ignore_index, truncate (book §7.3).

    Items that are `(prompt_length, token_ids)` pairs also get their first
    `prompt_length - 1` targets masked (exercise 7.2).
    """
    raise NotImplementedError(
        "draft 2, then in each target row replace every pad_token_id after the first by "
        "ignore_index, then cut rows to allowed_max_length (book §7.3)"
    )
