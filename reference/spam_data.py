"""SMS spam data: download, balance, split, tokenize, batch (book §6.2–6.3).

The UCI SMS Spam Collection is read as the book reads it (tab-separated, no
header, pandas' default quoting: 4825 ham / 747 spam), balanced by
undersampling ham to 747, labelled ham 0 / spam 1, shuffled with
`random_state=123` and cut 70/10/20 into 1045/149/300 rows, written as
train/validation/test CSVs. `SpamDataset` pads every text to the longest
training text (120 tokens) — or truncates/pads to a given `max_length`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from ftkit.io.assets import fetch
from ftkit.io.files import atomic_path

LABELS = {"ham": 0, "spam": 1}
PAD_TOKEN_ID = 50256  # GPT-2's <|endoftext|>, used as padding (book §6.3)
SPLIT_FILES = {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}


def download_and_unzip_spam_data(data_file_path: str | Path | None = None) -> Path:
    """The verified, extracted SMSSpamCollection file; copied to `data_file_path` if given (book §6.2).

    Downloading, checksum and unzipping are the kit's asset cache's job (`fetch`).
    """
    source = fetch("sms-spam-collection")
    if data_file_path is None:
        return source
    target = Path(data_file_path)
    if target.exists():
        return target  # as the book: an existing file is not downloaded again
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def load_spam_data(path: str | Path | None = None) -> pd.DataFrame:
    """Read the tab-separated collection into a DataFrame with columns Label, Text (book §6.2)."""
    path = Path(path) if path is not None else fetch("sms-spam-collection")
    if not path.is_file():
        raise FileNotFoundError(f"SMS spam data file not found: {path}")
    try:
        df = pd.read_csv(path, sep="\t", header=None, names=["Label", "Text"])
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a tab-separated Label<TAB>Text file: {err}") from err
    bad = df.index[~df["Label"].isin(list(LABELS))]
    if len(bad):
        row = int(bad[0])
        raise ValueError(
            f"{path}: row {row} has label {df['Label'][row]!r}; expected one of {list(LABELS)} "
            f"({len(bad)} bad rows)"
        )
    missing = df.index[df["Text"].isna()]
    if len(missing):
        raise ValueError(f"{path}: row {int(missing[0])} has no text after its label")
    return df


def _require_columns(df: Any, columns: tuple[str, ...], where: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; has {list(df.columns)}")


def create_balanced_dataset(df: pd.DataFrame) -> pd.DataFrame:
    """Undersample ham to as many rows as spam, `random_state=123` (book §6.2)."""
    _require_columns(df, ("Label",), "create_balanced_dataset")
    spam = df[df["Label"] == "spam"]
    ham = df[df["Label"] == "ham"]
    if len(spam) == 0 or len(ham) < len(spam):
        raise ValueError(
            f"create_balanced_dataset: needs at least one spam row and as many ham rows as "
            f"spam rows; got {len(ham)} ham, {len(spam)} spam"
        )
    ham_subset = ham.sample(len(spam), random_state=123)
    return pd.concat([ham_subset, spam])


def map_labels(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with Label mapped ham -> 0, spam -> 1 (book §6.2)."""
    _require_columns(df, ("Label",), "map_labels")
    bad = df.index[~df["Label"].isin(list(LABELS))]
    if len(bad):
        raise ValueError(
            f"map_labels: row {bad[0]} has label {df['Label'][bad[0]]!r}; "
            f"expected one of {list(LABELS)}"
        )
    out = df.copy()
    out["Label"] = out["Label"].map(LABELS)
    return out


def random_split(
    df: pd.DataFrame, train_frac: float, validation_frac: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shuffle (`random_state=123`) and cut into train, validation, test (book §6.2)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"random_split: expected a pandas DataFrame, got {type(df).__name__}")
    for name, frac in (("train_frac", train_frac), ("validation_frac", validation_frac)):
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
            raise ValueError(f"{name} must be a number between 0 and 1, got {frac!r}")
    if train_frac + validation_frac > 1:
        raise ValueError(
            f"train_frac + validation_frac must be at most 1 (the rest is test), "
            f"got {train_frac} + {validation_frac}"
        )
    df = df.sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    return df[:train_end], df[train_end:validation_end], df[validation_end:]


def write_splits(
    train_df: pd.DataFrame, validation_df: pd.DataFrame, test_df: pd.DataFrame, folder: str | Path
) -> dict[str, Path]:
    """Write train.csv, validation.csv, test.csv (no index) into `folder`, atomically (book §6.2)."""
    folder = Path(folder)
    paths = {}
    for name, frame in (("train", train_df), ("validation", validation_df), ("test", test_df)):
        _require_columns(frame, ("Label", "Text"), f"write_splits: {name}")
        paths[name] = folder / SPLIT_FILES[name]
        with atomic_path(paths[name]) as tmp:
            frame.to_csv(tmp, index=None)
    return paths


def prepare_spam_splits(folder: str | Path, data_file: str | Path | None = None) -> dict[str, Path]:
    """Load, balance, label, split 70/10/20 and write the three CSVs (book §6.2, end to end)."""
    balanced = map_labels(create_balanced_dataset(load_spam_data(data_file)))
    return write_splits(*random_split(balanced, 0.7, 0.1), folder)


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
        csv_file = Path(csv_file)
        if not csv_file.is_file():
            raise FileNotFoundError(f"spam CSV not found: {csv_file}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ValueError(f"max_length must be None or a positive int, got {max_length!r}")
        self.data = pd.read_csv(csv_file)
        _require_columns(self.data, ("Label", "Text"), str(csv_file))
        bad = self.data.index[~self.data["Label"].isin(list(LABELS.values()))]
        if len(bad):
            raise ValueError(
                f"{csv_file}: row {bad[0]} has label {self.data['Label'][bad[0]]!r}; expected 0 "
                "(ham) or 1 (spam) — map the labels before writing the CSV"
            )
        texts = self.data["Text"].fillna("").astype(str)
        self.encoded_texts = [tokenizer.encode(text) for text in texts]
        if max_length is None:
            self.max_length = self._longest_encoded_length()
        else:
            self.max_length = max_length
            self.encoded_texts = [ids[:max_length] for ids in self.encoded_texts]
        self.encoded_texts = [
            ids + [pad_token_id] * (self.max_length - len(ids)) for ids in self.encoded_texts
        ]
        self.labels = [int(label) for label in self.data["Label"]]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.tensor(self.encoded_texts[index], dtype=torch.long),
            torch.tensor(self.labels[index], dtype=torch.long),
        )

    def __len__(self) -> int:
        return len(self.data)

    def _longest_encoded_length(self) -> int:
        return max((len(ids) for ids in self.encoded_texts), default=0)


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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    train_dataset = SpamDataset(train_csv, tokenizer, max_length=max_length)
    # The book pads validation and test to the TRAINING length (longer texts are cut).
    validation_dataset = SpamDataset(validation_csv, tokenizer, max_length=train_dataset.max_length)
    test_dataset = SpamDataset(test_csv, tokenizer, max_length=train_dataset.max_length)
    if seed is not None:
        torch.manual_seed(seed)

    def loader(dataset: SpamDataset, train: bool) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=train, drop_last=train, num_workers=num_workers
        )

    return (
        loader(train_dataset, True),
        loader(validation_dataset, False),
        loader(test_dataset, False),
    )
