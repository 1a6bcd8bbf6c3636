"""SMS spam data: balance, split, tokenize (book §6.2-6.3).

The UCI SMS Spam Collection (4825 ham / 747 spam) is balanced by undersampling ham
to 747 rows, labelled ham 0 / spam 1, shuffled with `random_state=123` and cut
70/10/20 into 1045/149/300 rows. `SpamDataset` pads every text to the longest
training text (120 tokens) — or truncates/pads to a given `max_length`.

Downloading, reading the TSV, mapping the labels, writing the split CSVs and the
loaders are the kit's (`ftkit/data/spam.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset

from ftkit.checks import fraction, positive_int, require_columns  # kit: input checks
from reference.collate import PAD_TOKEN_ID


def create_balanced_dataset(df: pd.DataFrame) -> pd.DataFrame:
    """Undersample ham to as many rows as spam, `random_state=123` (book §6.2)."""
    require_columns(df, ("Label",), "create_balanced_dataset")  # kit:
    num_spam = int((df["Label"] == "spam").sum())
    num_ham = int((df["Label"] == "ham").sum())
    if num_spam == 0 or num_ham < num_spam:  # kit: input check
        raise ValueError(
            f"create_balanced_dataset: needs at least one spam row and as many ham rows as "
            f"spam rows; got {num_ham} ham, {num_spam} spam"
        )
    ham_subset = df[df["Label"] == "ham"].sample(num_spam, random_state=123)
    return pd.concat([ham_subset, df[df["Label"] == "spam"]])


def random_split(
    df: pd.DataFrame, train_frac: float, validation_frac: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shuffle (`random_state=123`) and cut into train, validation, test (book §6.2)."""
    require_columns(df, (), "random_split")  # kit: input checks
    fraction(train_frac, "train_frac")  # kit:
    fraction(validation_frac, "validation_frac")  # kit:
    if train_frac + validation_frac > 1:  # kit:
        raise ValueError(
            f"train_frac + validation_frac must be at most 1 (the rest is test), "
            f"got {train_frac} + {validation_frac}"
        )
    df = df.sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    train_df = df[:train_end]
    validation_df = df[train_end:validation_end]
    test_df = df[validation_end:]
    return train_df, validation_df, test_df


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
        if max_length is not None:  # kit: input check
            positive_int(max_length, "max_length")
        self.data = pd.read_csv(csv_file)
        require_columns(self.data, ("Label", "Text"), str(csv_file))  # kit:
        bad = self.data.index[~self.data["Label"].isin((0, 1))]  # kit: labels must be mapped
        if len(bad):
            raise ValueError(
                f"{csv_file}: row {bad[0]} has label {self.data['Label'][bad[0]]!r}; expected 0 "
                "(ham) or 1 (spam) — map the labels before writing the CSV"
            )
        self.encoded_texts = [tokenizer.encode(text) for text in self.data["Text"]]
        if max_length is None:
            self.max_length = self._longest_encoded_length()
        else:
            self.max_length = max_length
            self.encoded_texts = [ids[:max_length] for ids in self.encoded_texts]
        self.encoded_texts = [
            ids + [pad_token_id] * (self.max_length - len(ids)) for ids in self.encoded_texts
        ]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        label = self.data.iloc[index]["Label"]
        return (
            torch.tensor(self.encoded_texts[index], dtype=torch.long),
            torch.tensor(label, dtype=torch.long),
        )

    def __len__(self) -> int:
        return len(self.data)

    def _longest_encoded_length(self) -> int:
        return max((len(ids) for ids in self.encoded_texts), default=0)
