"""Batching instruction examples: pad, shift, mask (book §7.3, exercise 7.2).

An instruction example is a plain list of token ids (the book's item format).
The collate functions pad every item of a batch to the longest item plus one
with the end-of-text id, then split the padded rows into inputs (all but the
last token) and targets (shifted one to the right). `custom_collate_fn` also
replaces every padding target after the first end-of-text by `ignore_index`, so
the loss teaches the model to stop exactly once and ignores the rest.

For exercise 7.2 (masking the instruction) an item may instead be an
`InstructionItem(prompt_length, token_ids)` pair — the book's exercise solution
returns `(instruction_length, encoded)` tuples, and any such pair works. The
first `prompt_length - 1` targets (those that predict prompt tokens) then also
become `ignore_index`. Plain lists are collated exactly as the book does.

The book's known trap, kept on purpose: the padding mask is computed on
`targets == pad_token_id`, so a text that itself contains the end-of-text id
50256 keeps *that* target and loses the real end-of-text appended after it
(see tests/book/test_collate.py::test_end_of_text_inside_the_text_is_kept_book_behaviour).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

PAD_TOKEN_ID = 50256  # GPT-2's <|endoftext|>, which doubles as padding (book §7.3)
IGNORE_INDEX = -100  # the default ignore_index of torch.nn.functional.cross_entropy


class InstructionItem(NamedTuple):
    """One example with its prompt length, for masking the instruction (book exercise 7.2)."""

    prompt_length: int
    token_ids: list[int]


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but True/False as a token id is a bug upstream.
    return isinstance(value, int) and not isinstance(value, bool)


def _token_list(item: Any, index: int) -> list[int]:
    """Item `index` of a batch as a list of non-negative ints, or an error naming where it is bad."""
    if isinstance(item, torch.Tensor):
        if item.dim() != 1 or item.dtype.is_floating_point or item.dtype == torch.bool:
            raise TypeError(
                f"batch item {index}: expected a 1-D integer tensor of token ids, got a "
                f"{item.dim()}-D {item.dtype} tensor"
            )
        item = item.tolist()
    if isinstance(item, (str, bytes)) or not isinstance(item, Sequence):
        raise TypeError(
            f"batch item {index}: expected a list of token ids, got {type(item).__name__}"
        )
    if len(item) == 0:
        raise ValueError(f"batch item {index} is empty: there is no text to learn from")
    for position, token in enumerate(item):
        if not _is_int(token):
            raise TypeError(
                f"batch item {index}, position {position}: expected an integer token id, "
                f"got {type(token).__name__} {token!r}"
            )
        if token < 0:
            raise ValueError(
                f"batch item {index}, position {position}: token id {token} is negative"
            )
    return list(item)


def _is_masked_item(item: Any) -> bool:
    """True for an (int prompt_length, sequence of token ids) pair (exercise 7.2 items)."""
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and _is_int(item[0])
        and isinstance(item[1], (Sequence, torch.Tensor))
        and not isinstance(item[1], (str, bytes))
    )


def _check_batch(batch: Any) -> list[Any]:
    if isinstance(batch, torch.Tensor) or not isinstance(batch, Sequence) or len(batch) == 0:
        what = "an empty batch" if isinstance(batch, Sequence) else type(batch).__name__
        raise ValueError(f"collate needs a non-empty list of token-id lists, got {what}")
    return list(batch)


def _check_pad(pad_token_id: Any) -> None:
    if not _is_int(pad_token_id) or pad_token_id < 0:
        raise ValueError(f"pad_token_id must be a non-negative int, got {pad_token_id!r}")


def _pad_rows(items: list[list[int]], pad_token_id: int) -> torch.Tensor:
    """Rows padded to the longest item + 1, so every row has at least one end-of-text token."""
    width = max(len(item) for item in items) + 1
    rows = [item + [pad_token_id] * (width - len(item)) for item in items]
    return torch.tensor(rows, dtype=torch.long)


def custom_collate_draft_1(
    batch: Sequence[Sequence[int]], pad_token_id: int = PAD_TOKEN_ID, device: str = "cpu"
) -> torch.Tensor:
    """Pad a batch of token lists to equal length; return the inputs only (book §7.3, draft 1)."""
    _check_pad(pad_token_id)
    items = [_token_list(item, i) for i, item in enumerate(_check_batch(batch))]
    padded = _pad_rows(items, pad_token_id)
    # The extra end-of-text column is dropped from the inputs: it is only ever a target.
    return padded[:, :-1].to(device)


def custom_collate_draft_2(
    batch: Sequence[Sequence[int]], pad_token_id: int = PAD_TOKEN_ID, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad and return (inputs, targets), the targets shifted one position right (book §7.3, draft 2)."""
    _check_pad(pad_token_id)
    items = [_token_list(item, i) for i, item in enumerate(_check_batch(batch))]
    padded = _pad_rows(items, pad_token_id)
    return padded[:, :-1].to(device), padded[:, 1:].to(device)


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
    _check_pad(pad_token_id)
    if not _is_int(ignore_index):
        raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
    if allowed_max_length is not None and (
        not _is_int(allowed_max_length) or allowed_max_length < 1
    ):
        raise ValueError(
            f"allowed_max_length must be None or a positive int, got {allowed_max_length!r}"
        )
    raw = _check_batch(batch)
    masked = [_is_masked_item(item) for item in raw]
    if any(masked) and not all(masked):
        raise TypeError(
            f"batch item {masked.index(not masked[0])}: mixes (prompt_length, token_ids) pairs "
            "with plain token lists; a batch must use one item format"
        )
    items = [_token_list(item[1] if m else item, i) for i, (item, m) in enumerate(zip(raw, masked))]
    prompt_lengths = [item[0] for item in raw] if masked[0] else None
    if prompt_lengths is not None:
        for i, (length, item) in enumerate(zip(prompt_lengths, items)):
            if not 1 <= length <= len(item):
                raise ValueError(
                    f"batch item {i}: prompt_length {length} must be between 1 and the "
                    f"item's {len(item)} tokens"
                )

    padded = _pad_rows(items, pad_token_id)
    inputs, targets = padded[:, :-1], padded[:, 1:].clone()

    # Keep the first end-of-text target of each row (the model must learn to stop) and
    # ignore the rest. Like the book, this looks at the token value, not at where the
    # padding started.
    is_pad = targets == pad_token_id
    targets[is_pad & (is_pad.cumsum(dim=1) > 1)] = ignore_index

    if prompt_lengths is not None:
        # Target j predicts token j + 1, so targets 0 .. prompt_length - 2 predict prompt tokens.
        cutoff = torch.tensor(prompt_lengths).unsqueeze(1) - 1
        positions = torch.arange(targets.shape[1]).unsqueeze(0)
        targets[positions < cutoff] = ignore_index

    if allowed_max_length is not None:
        inputs = inputs[:, :allowed_max_length]
        targets = targets[:, :allowed_max_length]
    return inputs.to(device), targets.to(device)
