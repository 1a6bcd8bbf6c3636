"""Chapter 7's data set from disk and its loaders: the kit's I/O around the book's §7.2-7.3 code.

`load_instruction_data` reads the JSON list of entries with errors that name the
file, the entry and the key; `create_instruction_loaders` is the book's §7.3 code
block (three loaders over `InstructionDataset` and `custom_collate_fn`) as one
function, with the chapter's exercises as options.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ftkit.checks import positive_int, require_text_fields
from ftkit.io.assets import fetch
from reference.collate import custom_collate_fn
from reference.instruction_data import ENTRY_KEYS, InstructionDataset


def load_instruction_data(path: str | Path | None = None) -> list[dict[str, str]]:
    """Read and check the instruction data set, a JSON list of entries (book §7.2).

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
        require_text_fields(entry, ENTRY_KEYS, f"{path}: entry {index}")
    return data


def create_instruction_loaders(
    train_data: list[dict[str, str]],
    val_data: list[dict[str, str]],
    test_data: list[dict[str, str]],
    tokenizer: Any,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    allowed_max_length: int | None = 1024,
    device: str | torch.device = "cpu",
    style: str = "alpaca",
    mask_instruction: bool = False,
    seed: int | None = 123,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train/validation/test loaders: train shuffled with drop_last, others in order (book §7.3).

    `torch.manual_seed(seed)` is set first, as the book does, so the train order is the
    book's. `style` is exercise 7.1, `mask_instruction` 7.2, `allowed_max_length=512` 7.3.
    """
    positive_int(batch_size, "batch_size")
    if allowed_max_length is not None:
        positive_int(allowed_max_length, "allowed_max_length")
    if seed is not None:
        torch.manual_seed(seed)
    collate = partial(custom_collate_fn, device=device, allowed_max_length=allowed_max_length)

    def loader(data: list[dict[str, str]], train: bool) -> DataLoader:
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
