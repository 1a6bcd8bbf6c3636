"""Instruction data: load, format as prompts, split, tokenize, batch (book §7.2–7.4).

Item format of `InstructionDataset` (what the collate function receives):
- `mask_instruction=False` (the book's §7.2–7.4): a plain `list[int]` of token ids of
  `format_input(entry) + format_response(entry)` — exactly what the book's
  `custom_collate_fn` expects.
- `mask_instruction=True` (exercise 7.2): an `InstructionItem(prompt_length, token_ids)`
  pair, the book's exercise-solution tuple `(instruction_length, encoded)`;
  `prompt_length` is the token count of `format_input(entry)` alone, and
  `custom_collate_fn` sets the targets that predict those tokens to `ignore_index`.

Prompt styles (exercise 7.1), as the book's exercise solution formats them:
- `"alpaca"`: "Below is an instruction ... request.\\n\\n### Instruction:\\n{instruction}"
  + "\\n\\n### Input:\\n{input}" when the input is not empty; response
  "\\n\\n### Response:\\n{output}".
- `"phi3"`: "<|user|>\\n{instruction}" + "\\n{input}" when the input is not empty;
  response "\\n<|assistant|>:\\n{output}" — ONE newline before "<|assistant|>:" (the
  solution's `InstructionDataset`), although its prose sketch shows a blank line there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ftkit.io.assets import fetch
from reference.collate import IGNORE_INDEX, PAD_TOKEN_ID, InstructionItem, custom_collate_fn

ENTRY_KEYS = ("instruction", "input", "output")
PROMPT_STYLES = ("alpaca", "phi3")
ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)


def _check_entry(entry: Any, where: str) -> None:
    """Raise naming `where` (e.g. "entry 12 of data.json") when an entry is malformed."""
    if not isinstance(entry, dict):
        raise ValueError(
            f"{where}: expected an object with keys {list(ENTRY_KEYS)}, got {type(entry).__name__}"
        )
    for key in ENTRY_KEYS:
        if key not in entry:
            raise ValueError(f"{where}: missing key {key!r}")
        if not isinstance(entry[key], str):
            raise ValueError(
                f"{where}: key {key!r} must be a string, got {type(entry[key]).__name__}"
            )


def _check_style(style: str) -> None:
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; choose one of {list(PROMPT_STYLES)}")


def load_instruction_data(path: str | Path | None = None) -> list[dict[str, str]]:
    """Read and validate the instruction data set, a JSON list of entries (book §7.2).

    Without `path` the book's 1100-entry file is fetched (verified) via the kit's assets.
    """
    path = Path(path) if path is not None else fetch("instruction-data")
    if not path.is_file():
        raise FileNotFoundError(f"instruction data file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: not valid JSON at line {err.lineno}, column {err.colno} "
            f"(character {err.pos}): {err.msg}"
        ) from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text at byte {err.start}") from err
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of entries, got {type(data).__name__}")
    for index, entry in enumerate(data):
        _check_entry(entry, f"{path}: entry {index}")
    return data


def format_input(entry: dict[str, str], style: str = "alpaca") -> str:
    """The prompt: instruction, plus the input section only when the input is not empty (book §7.2)."""
    _check_style(style)
    _check_entry(entry, "format_input: entry")
    if style == "phi3":
        # Exercise 7.1's Phi-3 template: shorter prompts, so faster fine-tuning.
        input_text = f"\n{entry['input']}" if entry["input"] else ""
        return f"<|user|>\n{entry['instruction']}{input_text}"
    input_text = f"\n\n### Input:\n{entry['input']}" if entry["input"] else ""
    return f"{ALPACA_PREAMBLE}\n\n### Instruction:\n{entry['instruction']}{input_text}"


def format_response(entry: dict[str, str], style: str = "alpaca") -> str:
    """The response part appended to the prompt for training: header + desired output (book §7.2)."""
    _check_style(style)
    _check_entry(entry, "format_response: entry")
    if style == "phi3":
        return f"\n<|assistant|>:\n{entry['output']}"
    return f"\n\n### Response:\n{entry['output']}"


def split_data(
    data: Sequence[Any], train_frac: float = 0.85, test_frac: float = 0.10
) -> tuple[list[Any], list[Any], list[Any]]:
    """Split in order into (train, test, validation); validation gets the remainder (book §7.2)."""
    for name, frac in (("train_frac", train_frac), ("test_frac", test_frac)):
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
            raise ValueError(f"{name} must be a number between 0 and 1, got {frac!r}")
    if train_frac + test_frac > 1:
        raise ValueError(
            f"train_frac + test_frac must be at most 1 (the rest is validation), "
            f"got {train_frac} + {test_frac}"
        )
    data = list(data)
    # int() truncates as the book does: 1100 entries -> 935 / 110 / 55.
    train_end = int(len(data) * train_frac)
    test_end = train_end + int(len(data) * test_frac)
    return data[:train_end], data[train_end:test_end], data[test_end:]


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
        _check_style(style)
        self.data = list(data)
        self.style = style
        self.mask_instruction = mask_instruction
        self.encoded_texts: list[list[int]] = []
        self.prompt_lengths: list[int] = []
        for index, entry in enumerate(self.data):
            _check_entry(entry, f"InstructionDataset: entry {index}")
            prompt = format_input(entry, style)
            self.encoded_texts.append(tokenizer.encode(prompt + format_response(entry, style)))
            if mask_instruction:
                self.prompt_lengths.append(len(tokenizer.encode(prompt)))

    def __getitem__(self, index: int) -> list[int] | InstructionItem:
        if self.mask_instruction:
            return InstructionItem(self.prompt_lengths[index], self.encoded_texts[index])
        return self.encoded_texts[index]

    def __len__(self) -> int:
        return len(self.data)


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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if allowed_max_length is not None and (
        isinstance(allowed_max_length, bool)
        or not isinstance(allowed_max_length, int)
        or allowed_max_length < 1
    ):
        raise ValueError(
            f"allowed_max_length must be None or a positive int, got {allowed_max_length!r}"
        )
    if seed is not None:
        torch.manual_seed(seed)
    collate: Callable = partial(
        custom_collate_fn,
        pad_token_id=PAD_TOKEN_ID,
        ignore_index=IGNORE_INDEX,
        allowed_max_length=allowed_max_length,
        device=device,
    )

    def loader(data: Sequence[dict[str, str]], train: bool) -> DataLoader:
        dataset = InstructionDataset(
            data, tokenizer, style=style, mask_instruction=mask_instruction
        )
        return DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=collate,
            shuffle=train,
            drop_last=train,
            num_workers=num_workers,
        )

    return loader(train_data, True), loader(val_data, False), loader(test_data, False)
