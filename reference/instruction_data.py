"""Instruction data: format entries as prompts, split, tokenize (book §7.2-7.3).

Item format of `InstructionDataset` (what the collate function receives):
- `mask_instruction=False` (the book's §7.2-7.4): a plain `list[int]` of token ids of
  the prompt (`format_input(entry)`) followed by the response text — exactly what
  the book's `custom_collate_fn` expects.
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

Reading the JSON file and the §7.3 loaders are the kit's (`ftkit/data/instruction.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from ftkit.checks import fraction, require_text_fields  # kit: input checks
from reference.collate import InstructionItem  # kit: exercise 7.2's item

ENTRY_KEYS = ("instruction", "input", "output")  # kit: what an entry must hold
PROMPT_STYLES = ("alpaca", "phi3")  # kit: exercise 7.1
ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)


def _check_style(style: str) -> None:  # kit: input check
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; choose one of {list(PROMPT_STYLES)}")


def format_input(entry: dict[str, str], *, style: str = "alpaca") -> str:
    """The prompt: instruction, plus the input section only when the input is not empty (book §7.2)."""
    _check_style(style)  # kit:
    require_text_fields(entry, ENTRY_KEYS, "format_input: entry")  # kit:
    if style == "phi3":  # kit: exercise 7.1's Phi-3 template, shorter prompts
        input_text = f"\n{entry['input']}" if entry["input"] else ""
        return f"<|user|>\n{entry['instruction']}{input_text}"
    input_text = f"\n\n### Input:\n{entry['input']}" if entry["input"] else ""
    # kit: the book's instruction_text + input_text, its preamble defined once
    return f"{ALPACA_PREAMBLE}\n\n### Instruction:\n{entry['instruction']}{input_text}"


def split_data(
    data: Sequence[Any], train_frac: float = 0.85, test_frac: float = 0.10
) -> tuple[list[Any], list[Any], list[Any]]:
    """Split in order into (train, test, validation); validation gets the remainder (book §7.2)."""
    fraction(train_frac, "train_frac")  # kit: input checks
    fraction(test_frac, "test_frac")  # kit:
    if train_frac + test_frac > 1:  # kit:
        raise ValueError(
            f"train_frac + test_frac must be at most 1 (the rest is validation), "
            f"got {train_frac} + {test_frac}"
        )
    data = list(data)
    # int() truncates as the book does: 1100 entries -> 935 / 110 / 55.
    train_portion = int(len(data) * train_frac)
    test_portion = int(len(data) * test_frac)
    train_data = data[:train_portion]
    test_data = data[train_portion : train_portion + test_portion]
    val_data = data[train_portion + test_portion :]
    return train_data, test_data, val_data


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
        _check_style(style)  # kit:
        self.data = data
        self.mask_instruction = mask_instruction  # kit: exercise 7.2
        self.prompt_lengths: list[int] = []  # kit: exercise 7.2
        self.encoded_texts = []
        for index, entry in enumerate(data):  # kit: the index names a bad entry
            require_text_fields(entry, ENTRY_KEYS, f"InstructionDataset: entry {index}")  # kit:
            instruction_plus_input = format_input(entry, style=style)  # kit: exercise 7.1
            if style == "phi3":  # kit: exercise 7.1
                response_text = f"\n<|assistant|>:\n{entry['output']}"
            else:
                response_text = f"\n\n### Response:\n{entry['output']}"
            full_text = instruction_plus_input + response_text
            self.encoded_texts.append(tokenizer.encode(full_text))
            if mask_instruction:  # kit: exercise 7.2
                self.prompt_lengths.append(len(tokenizer.encode(instruction_plus_input)))

    def __getitem__(self, index: int) -> list[int] | InstructionItem:
        if self.mask_instruction:  # kit: exercise 7.2
            return InstructionItem(self.prompt_lengths[index], self.encoded_texts[index])
        return self.encoded_texts[index]

    def __len__(self) -> int:
        return len(self.data)
