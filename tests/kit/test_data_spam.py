"""The kit's chapter 6 data room (`ftkit/data/spam.py`): the file, labels, split CSVs, loaders."""

from __future__ import annotations

import pandas as pd
import pytest

from ftkit.asserts import assert_equal
from ftkit.data import spam
from ftkit.io.tokenizer import get_tokenizer


@pytest.fixture(scope="module")
def raw():
    return spam.load_spam_data()


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return spam.prepare_spam_splits(tmp_path_factory.mktemp("spam"))


@pytest.fixture
def g(golden):
    return golden("spam_data")


def counts(df):
    return {str(k): int(v) for k, v in df["Label"].value_counts().items()}


def test_download_gives_the_verified_file(tmp_path):
    path = spam.download_and_unzip_spam_data()
    assert path.is_file(), "the extracted SMSSpamCollection file"
    copy = spam.download_and_unzip_spam_data(tmp_path / "sms" / "SMSSpamCollection.tsv")
    assert copy.read_bytes() == path.read_bytes(), "data_file_path receives the same bytes"


def test_load_spam_data_counts(raw, g):
    assert_equal(list(raw.columns), ["Label", "Text"], name="columns", why="book §6.2")
    assert_equal(counts(raw), g["label_counts"], name="label counts", why="book §6.2")


def test_map_labels(raw):
    mapped = spam.map_labels(raw.head(20))
    want = [{"ham": 0, "spam": 1}[label] for label in raw.head(20)["Label"]]
    assert_equal(mapped["Label"].tolist(), want, name="labels", why="ham 0, spam 1 (book §6.2)")
    assert raw.head(20)["Label"].iloc[0] in ("ham", "spam"), "the input frame is not modified"


def test_write_splits(raw, tmp_path):
    from reference.spam_data import create_balanced_dataset, random_split

    parts = random_split(spam.map_labels(create_balanced_dataset(raw)), 0.7, 0.1)
    paths = spam.write_splits(*parts, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["test.csv", "train.csv", "validation.csv"]
    for part, path in zip(parts, (paths["train"], paths["validation"], paths["test"])):
        back = pd.read_csv(path)
        assert list(back.columns) == ["Label", "Text"], f"{path.name}: no index column"
        assert back["Label"].tolist() == part["Label"].tolist(), f"{path.name}: same rows"
    assert not list((tmp_path / "out").glob("*.tmp")), "no temp files left behind"


def test_prepare_spam_splits(splits, g):
    sizes = [len(pd.read_csv(splits[name])) for name in ("train", "validation", "test")]
    assert_equal(sizes, g["split_sizes"], name="CSV row counts", why="book §6.2")


def test_loaders_as_printed(splits, g):
    train_loader, val_loader, test_loader = spam.create_spam_loaders(
        splits["train"], splits["validation"], splits["test"], get_tokenizer()
    )
    n = [len(train_loader), len(val_loader), len(test_loader)]
    assert_equal(n, g["num_batches"], name="batches", why="batch 8, drop_last on train (§6.3)")
    inputs, labels = next(iter(train_loader))
    assert_equal(list(inputs.shape), g["input_batch_shape"], name="input batch shape", why="§6.3")
    assert_equal(list(labels.shape), g["label_batch_shape"], name="label batch shape", why="§6.3")
    for loader in (val_loader, test_loader):
        assert loader.dataset.max_length == g["max_length"], "padded to the TRAIN length (§6.3)"


@pytest.mark.parametrize("batch_size", [0, True, 2.5])
def test_loaders_bad_batch_size(splits, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        spam.create_spam_loaders(
            splits["train"],
            splits["validation"],
            splits["test"],
            get_tokenizer(),
            batch_size=batch_size,
        )


# --- bad input ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        spam.load_spam_data(tmp_path / "nope.tsv")


def test_bad_label_names_the_row(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("ham\thello\nspma\tWIN NOW\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv.*row 1.*'spma'"):
        spam.load_spam_data(path)


def test_map_labels_unknown_label():
    with pytest.raises(ValueError, match=r"row 1.*'eggs'"):
        spam.map_labels(pd.DataFrame({"Label": ["ham", "eggs"], "Text": ["a", "b"]}))


@pytest.mark.parametrize("frame", [pd.DataFrame({"Text": ["a"]}), "not a frame"])
def test_map_labels_needs_a_label_column(frame):
    with pytest.raises((ValueError, TypeError), match="Label|DataFrame"):
        spam.map_labels(frame)
