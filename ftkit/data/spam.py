"""Chapter 6's data set from disk to loaders: the kit's I/O around the book's §6.2-6.3 code.

The collection is fetched (downloaded, checksummed, unzipped) by the kit's asset
cache, read as the book reads it (tab-separated, no header, pandas' default
quoting), checked with errors that name the row, balanced and split by the book's
`create_balanced_dataset` / `random_split`, and written as train/validation/test
CSVs atomically. `create_spam_loaders` is the book's §6.3 code block as one function.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader

from ftkit.checks import positive_int, require_columns
from ftkit.io.assets import fetch
from ftkit.io.files import atomic_path
from reference.spam_data import SpamDataset, create_balanced_dataset, random_split

LABELS = {"ham": 0, "spam": 1}  # the book's label mapping (§6.2)
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


def _check_labels(df: pd.DataFrame, where: str) -> None:
    bad = df.index[~df["Label"].isin(list(LABELS))]
    if len(bad):
        raise ValueError(
            f"{where}: row {bad[0]} has label {df['Label'][bad[0]]!r}; expected one of "
            f"{list(LABELS)} ({len(bad)} bad rows)"
        )


def load_spam_data(path: str | Path | None = None) -> pd.DataFrame:
    """Read the tab-separated collection into a DataFrame with columns Label, Text (book §6.2)."""
    path = Path(path) if path is not None else fetch("sms-spam-collection")
    if not path.is_file():
        raise FileNotFoundError(f"SMS spam data file not found: {path}")
    try:
        df = pd.read_csv(path, sep="\t", header=None, names=["Label", "Text"])
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; expected Label<TAB>Text lines") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a tab-separated Label<TAB>Text file: {err}") from err
    if df.empty:
        raise ValueError(f"{path}: the file is empty; expected Label<TAB>Text lines")
    _check_labels(df, str(path))
    missing = df.index[df["Text"].isna()]
    if len(missing):
        raise ValueError(f"{path}: row {int(missing[0])} has no text after its label")
    return df


def map_labels(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with Label mapped ham -> 0, spam -> 1 (book §6.2)."""
    require_columns(df, ("Label",), "map_labels")
    _check_labels(df, "map_labels")
    out = df.copy()
    out["Label"] = out["Label"].map(LABELS)
    return out


def write_splits(
    train_df: pd.DataFrame, validation_df: pd.DataFrame, test_df: pd.DataFrame, folder: str | Path
) -> dict[str, Path]:
    """Write train.csv, validation.csv, test.csv (no index) into `folder`, atomically (book §6.2)."""
    folder = Path(folder)
    paths = {}
    for name, frame in (("train", train_df), ("validation", validation_df), ("test", test_df)):
        require_columns(frame, ("Label", "Text"), f"write_splits: {name}")
        paths[name] = folder / SPLIT_FILES[name]
        with atomic_path(paths[name]) as tmp:
            frame.to_csv(tmp, index=None)
    return paths


def prepare_spam_splits(folder: str | Path, data_file: str | Path | None = None) -> dict[str, Path]:
    """Load, balance, label, split 70/10/20 and write the three CSVs (book §6.2, end to end)."""
    balanced = map_labels(create_balanced_dataset(load_spam_data(data_file)))
    return write_splits(*random_split(balanced, 0.7, 0.1), folder)


def check_split_csv(path: str | Path) -> None:
    """A clear error naming `path` when a split CSV is missing, empty or has no rows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spam split CSV not found: {path}")
    try:
        rows = len(pd.read_csv(path))
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path}: the CSV file is empty; expected a Label,Text header and rows"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a Label,Text CSV file: {err}") from err
    if rows == 0:
        raise ValueError(f"{path}: the CSV file has a header but no rows")


def create_spam_loaders(
    train_csv: str | Path,
    validation_csv: str | Path,
    test_csv: str | Path,
    tokenizer: Any,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    max_length: int | None = None,
    seed: int | None = 123,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Loaders: train shuffled with drop_last; validation/test in order, padded like train (book §6.3)."""
    positive_int(batch_size, "batch_size")
    for csv_file in (train_csv, validation_csv, test_csv):
        check_split_csv(csv_file)
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
