"""SMS spam data stage against the values book §6.2–6.3 prints, and bad input."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from ftkit.asserts import assert_equal

pytestmark = pytest.mark.stage("data")


@pytest.fixture(scope="module")
def tokenizer():
    # Tooling, not an exercise: imported directly.
    from ftkit.io.tokenizer import get_tokenizer

    return get_tokenizer()


@pytest.fixture(scope="module")
def raw(ref):
    return ref.load_spam_data()


@pytest.fixture(scope="module")
def splits(ref, tmp_path_factory):
    """The three CSVs written by the reference, for tests of the later steps."""
    return ref.prepare_spam_splits(tmp_path_factory.mktemp("spam"))


@pytest.fixture
def g(golden):
    return golden("spam_data")


def counts(df):
    return {str(k): int(v) for k, v in df["Label"].value_counts().items()}


@pytest.mark.exercise("download_and_unzip_spam_data")
def test_download_gives_the_verified_file(impl, tmp_path):
    path = impl.download_and_unzip_spam_data()
    assert path.is_file(), "the extracted SMSSpamCollection file"
    copy = impl.download_and_unzip_spam_data(tmp_path / "sms" / "SMSSpamCollection.tsv")
    assert copy.read_bytes() == path.read_bytes(), "data_file_path receives the same bytes"


@pytest.mark.exercise("load_spam_data")
def test_load_spam_data_counts(impl, g):
    df = impl.load_spam_data()
    assert_equal(list(df.columns), ["Label", "Text"], name="columns", why="book §6.2")
    assert_equal(counts(df), g["label_counts"], name="label counts", why="book §6.2")


@pytest.mark.exercise("create_balanced_dataset")
def test_balanced_dataset(impl, raw, g):
    balanced = impl.create_balanced_dataset(raw)
    assert_equal(counts(balanced), g["balanced_label_counts"], name="label counts", why="§6.2")
    assert set(balanced["Text"]) <= set(raw["Text"]), "rows come from the data set"


@pytest.mark.exercise("create_balanced_dataset")
def test_balanced_dataset_is_the_books_sample(impl, raw):
    """random_state=123 picks the same ham rows as the book's recipe (book §6.2).

    (Not compared with the book's package here: importing its ch06 takes ~2 s.)
    """
    ham = raw[raw["Label"] == "ham"].sample(747, random_state=123)
    spam = raw[raw["Label"] == "spam"]
    ours = impl.create_balanced_dataset(raw)
    assert ours.index.tolist() == ham.index.tolist() + spam.index.tolist(), (
        "df[ham].sample(num_spam, random_state=123), then concat with the spam rows (book §6.2)"
    )


@pytest.mark.exercise("map_labels")
def test_map_labels(impl, raw):
    mapped = impl.map_labels(raw.head(20))
    want = [{"ham": 0, "spam": 1}[label] for label in raw.head(20)["Label"]]
    assert_equal(mapped["Label"].tolist(), want, name="labels", why="ham 0, spam 1 (book §6.2)")
    assert raw.head(20)["Label"].iloc[0] in ("ham", "spam"), "the input frame is not modified"


@pytest.mark.exercise("random_split")
def test_random_split_sizes(impl, ref, raw, g):
    balanced = ref.map_labels(ref.create_balanced_dataset(raw))
    train, validation, test = impl.random_split(balanced, 0.7, 0.1)
    sizes = [len(train), len(validation), len(test)]
    assert_equal(sizes, g["split_sizes"], name="split sizes", why="70/10/20 of 1494 (book §6.2)")
    together = pd.concat([train, validation, test])
    assert sorted(together["Text"]) == sorted(balanced["Text"]), "nothing lost or repeated"
    assert train["Text"].tolist() != balanced["Text"].head(len(train)).tolist(), "shuffled"


@pytest.mark.exercise("write_splits")
def test_write_splits(impl, ref, raw, tmp_path):
    parts = ref.random_split(ref.map_labels(ref.create_balanced_dataset(raw)), 0.7, 0.1)
    paths = impl.write_splits(*parts, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["test.csv", "train.csv", "validation.csv"]
    for part, path in zip(parts, (paths["train"], paths["validation"], paths["test"])):
        back = pd.read_csv(path)
        assert list(back.columns) == ["Label", "Text"], f"{path.name}: no index column"
        assert back["Label"].tolist() == part["Label"].tolist(), f"{path.name}: same rows"
    assert not list((tmp_path / "out").glob("*.tmp")), "no temp files left behind"


@pytest.mark.exercise("prepare_spam_splits")
def test_prepare_spam_splits(impl, tmp_path, g):
    paths = impl.prepare_spam_splits(tmp_path)
    sizes = [len(pd.read_csv(paths[name])) for name in ("train", "validation", "test")]
    assert_equal(sizes, g["split_sizes"], name="CSV row counts", why="book §6.2")


@pytest.mark.exercise("SpamDataset")
def test_spam_dataset_pads_to_the_longest(impl, splits, tokenizer, g):
    dataset = impl.SpamDataset(splits["train"], tokenizer)
    assert_equal(dataset.max_length, g["max_length"], name="max_length", why="book §6.3")
    ids, label = dataset[0]
    assert ids.shape == (g["max_length"],) and ids.dtype == torch.long, "padded int64 ids"
    assert label.dtype == torch.long and label.item() in (0, 1), "an int64 0/1 label"


@pytest.mark.exercise("SpamDataset")
def test_spam_dataset_truncates_and_pads_to_max_length(impl, splits, tokenizer, g):
    short = impl.SpamDataset(splits["train"], tokenizer, max_length=10)
    assert short[0][0].shape == (10,), "texts longer than max_length are truncated"
    long = impl.SpamDataset(splits["train"], tokenizer, max_length=g["exercise_6_1_max_length"])
    ids = long[0][0]
    assert ids.shape == (1024,), "exercise 6.1: pad to the model's context length"
    assert ids[-1].item() == 50256, "padding uses the end-of-text id"


@pytest.mark.exercise("create_spam_loaders")
def test_loaders_as_printed(impl, splits, tokenizer, g):
    train_loader, val_loader, test_loader = impl.create_spam_loaders(
        splits["train"], splits["validation"], splits["test"], tokenizer
    )
    n = [len(train_loader), len(val_loader), len(test_loader)]
    assert_equal(n, g["num_batches"], name="batches", why="batch 8, drop_last on train (§6.3)")
    inputs, labels = next(iter(train_loader))
    assert_equal(list(inputs.shape), g["input_batch_shape"], name="input batch shape", why="§6.3")
    assert_equal(list(labels.shape), g["label_batch_shape"], name="label batch shape", why="§6.3")
    for loader in (val_loader, test_loader):
        assert loader.dataset.max_length == g["max_length"], "padded to the TRAIN length (§6.3)"


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.exercise("load_spam_data")
def test_missing_file(impl, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        impl.load_spam_data(tmp_path / "nope.tsv")


@pytest.mark.exercise("load_spam_data")
def test_bad_label_names_the_row(impl, tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("ham\thello\nspma\tWIN NOW\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv.*row 1.*'spma'"):
        impl.load_spam_data(path)


@pytest.mark.exercise("create_balanced_dataset")
@pytest.mark.beyond_book
def test_balance_needs_label_column(impl):
    with pytest.raises(ValueError, match="Label"):
        impl.create_balanced_dataset(pd.DataFrame({"Text": ["a"]}))


@pytest.mark.exercise("map_labels")
def test_map_labels_unknown_label(impl):
    with pytest.raises(ValueError, match=r"row 1.*'eggs'"):
        impl.map_labels(pd.DataFrame({"Label": ["ham", "eggs"], "Text": ["a", "b"]}))


@pytest.mark.exercise("random_split")
@pytest.mark.beyond_book
@pytest.mark.parametrize(("train_frac", "validation_frac"), [(1.5, 0.1), (0.8, 0.3), (-1, 0)])
def test_random_split_bad_fractions(impl, raw, train_frac, validation_frac):
    with pytest.raises(ValueError, match="frac"):
        impl.random_split(raw, train_frac, validation_frac)


@pytest.mark.exercise("SpamDataset")
@pytest.mark.beyond_book
def test_spam_dataset_bad_csv(impl, tmp_path, tokenizer):
    path = tmp_path / "unmapped.csv"
    pd.DataFrame({"Label": ["ham"], "Text": ["hi"]}).to_csv(path, index=None)
    with pytest.raises(ValueError, match=r"unmapped\.csv.*row 0"):
        impl.SpamDataset(path, tokenizer)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        impl.SpamDataset(tmp_path / "missing.csv", tokenizer)


@pytest.mark.exercise("SpamDataset")
@pytest.mark.beyond_book
def test_spam_dataset_bad_max_length(impl, splits, tokenizer):
    with pytest.raises(ValueError, match="max_length"):
        impl.SpamDataset(splits["train"], tokenizer, max_length=0)
