"""Exercises: SMS spam data — balance, split, tokenize (book §6.2-6.3).

The kit downloads and reads the collection, maps the labels and writes the split
CSVs for you (`ftkit/data/spam.py`).
`pytest --impl exercises tests/book/test_spam_data.py` shows what is left to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset

from exercises.collate import PAD_TOKEN_ID


def create_balanced_dataset(df: pd.DataFrame) -> pd.DataFrame:
    """Undersample ham to as many rows as spam, `random_state=123` (book §6.2)."""
    raise NotImplementedError(
        "sample as many ham rows as there are spam rows (random_state=123), concat with the "
        "spam rows (book §6.2)"
    )


def random_split(
    df: pd.DataFrame, train_frac: float, validation_frac: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shuffle (`random_state=123`) and cut into train, validation, test (book §6.2)."""
    raise NotImplementedError(
        "df.sample(frac=1, random_state=123).reset_index(drop=True), then cut at "
        "int(n * train_frac) and that + int(n * validation_frac) (book §6.2)"
    )


class SpamDataset(Dataset):
    """Token ids of each text padded to one length, with its 0/1 label (book §6.3).

    `max_length=None` pads to the longest text; a given `max_length` truncates longer
    texts and pads shorter ones up to it (exercise 6.1 pads to 1024).
    """

    def __init__(
        self,
        csv_file: str | Path,
        tokenizer: Any,
        max_length: int | None = None,
        pad_token_id: int = PAD_TOKEN_ID,
    ):
        raise NotImplementedError(
            "read the CSV, encode each Text, truncate to max_length (or find the longest), pad "
            "with pad_token_id; set self.max_length (book §6.3)"
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(
            "(torch.tensor(ids, dtype=torch.long), torch.tensor(label, dtype=torch.long)) "
            "(book §6.3)"
        )

    def __len__(self) -> int:
        raise NotImplementedError("the number of rows of the CSV (book §6.3)")
