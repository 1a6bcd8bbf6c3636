"""Exercises: SMS spam data — download, balance, split, tokenize, batch (book §6.2–6.3).

`pytest --impl exercises tests/book/test_spam_data.py` shows what is left to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from ftkit.io.assets import fetch  # noqa: F401  (fetch("sms-spam-collection") gives the file)

LABELS = {"ham": 0, "spam": 1}
PAD_TOKEN_ID = 50256  # GPT-2's <|endoftext|>, used as padding (book §6.3)
SPLIT_FILES = {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}


def download_and_unzip_spam_data(data_file_path: str | Path | None = None) -> Path:
    """The verified, extracted SMSSpamCollection file; copied to `data_file_path` if given (book §6.2).

    Downloading, checksum and unzipping are the kit's asset cache's job (`fetch`).
    """
    raise NotImplementedError(
        "return fetch('sms-spam-collection'), or copy it to data_file_path unless that file "
        "already exists (book §6.2)"
    )


def load_spam_data(path: str | Path | None = None) -> pd.DataFrame:
    """Read the tab-separated collection into a DataFrame with columns Label, Text (book §6.2)."""
    raise NotImplementedError(
        "pd.read_csv(path, sep='\\t', header=None, names=['Label', 'Text']); reject labels "
        "other than ham/spam naming the row (book §6.2)"
    )


def create_balanced_dataset(df: pd.DataFrame) -> pd.DataFrame:
    """Undersample ham to as many rows as spam, `random_state=123` (book §6.2)."""
    raise NotImplementedError(
        "sample as many ham rows as there are spam rows (random_state=123), concat with the "
        "spam rows (book §6.2)"
    )


def map_labels(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with Label mapped ham -> 0, spam -> 1 (book §6.2)."""
    raise NotImplementedError("df['Label'].map({'ham': 0, 'spam': 1}) on a copy (book §6.2)")


def random_split(
    df: pd.DataFrame, train_frac: float, validation_frac: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shuffle (`random_state=123`) and cut into train, validation, test (book §6.2)."""
    raise NotImplementedError(
        "df.sample(frac=1, random_state=123).reset_index(drop=True), then cut at "
        "int(n * train_frac) and that + int(n * validation_frac) (book §6.2)"
    )


def write_splits(
    train_df: pd.DataFrame, validation_df: pd.DataFrame, test_df: pd.DataFrame, folder: str | Path
) -> dict[str, Path]:
    """Write train.csv, validation.csv, test.csv (no index) into `folder`, atomically (book §6.2)."""
    raise NotImplementedError(
        "to_csv(index=None) each frame to a temp file in `folder`, then os.replace it onto "
        "SPLIT_FILES[name]; return the paths by name (book §6.2)"
    )


def prepare_spam_splits(folder: str | Path, data_file: str | Path | None = None) -> dict[str, Path]:
    """Load, balance, label, split 70/10/20 and write the three CSVs (book §6.2, end to end)."""
    raise NotImplementedError(
        "load_spam_data -> create_balanced_dataset -> map_labels -> random_split(0.7, 0.1) "
        "-> write_splits (book §6.2)"
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


def create_spam_loaders(
    train_csv: str | Path,
    validation_csv: str | Path,
    test_csv: str | Path,
    tokenizer: Any,
    batch_size: int = 8,
    num_workers: int = 0,
    max_length: int | None = None,
    seed: int | None = 123,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Loaders: train shuffled with drop_last; validation/test in order, padded like train (book §6.3)."""
    raise NotImplementedError(
        "validation/test datasets use max_length=train_dataset.max_length; "
        "torch.manual_seed(seed); train shuffle=True, drop_last=True; others neither (book §6.3)"
    )
