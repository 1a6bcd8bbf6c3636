"""SMS spam data stage against the values book §6.2-6.3 prints, and bad input.

Downloading, reading the TSV, mapping labels, writing the split CSVs and the
loaders are the kit's: tests/kit/test_data_spam.py.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from ftkit.asserts import assert_equal
from ftkit.data.spam import LABELS, load_spam_data, map_labels, write_splits

pytestmark = pytest.mark.stage("data")


@pytest.fixture(scope="module")
def tokenizer():
    # Tooling, not an exercise: imported directly.
    from ftkit.io.tokenizer import get_tokenizer

    return get_tokenizer()


@pytest.fixture(scope="module")
def raw():
    return load_spam_data()


@pytest.fixture(scope="module")
def splits(ref, raw, tmp_path_factory):
    """The three CSVs of the book's split (reference code), for tests of the later steps."""
    parts = ref.random_split(map_labels(ref.create_balanced_dataset(raw)), 0.7, 0.1)
    return write_splits(*parts, tmp_path_factory.mktemp("spam"))


@pytest.fixture
def g(golden):
    return golden("spam_data")


def counts(df):
    return {str(k): int(v) for k, v in df["Label"].value_counts().items()}


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
    got, want = ours.index.tolist(), ham.index.tolist() + spam.index.tolist()
    if sorted(got) == sorted(want) and got != want:
        assert got[: len(spam)] != spam.index.tolist(), (
            "the spam rows come first: the book concatenates [ham_subset, spam] (§6.2)"
        )
    if set(got) != set(want):
        assert set(got) - set(spam.index) == set(ham.index), (
            "the ham rows are not the book's sample: df[ham].sample(num_spam, random_state=123) "
            "(§6.2)"
        )
    assert ours.index.tolist() == ham.index.tolist() + spam.index.tolist(), (
        "df[ham].sample(num_spam, random_state=123), then concat with the spam rows (book §6.2)"
    )


@pytest.mark.exercise("random_split")
def test_random_split_sizes(impl, ref, raw, g):
    balanced = map_labels(ref.create_balanced_dataset(raw))
    train, validation, test = impl.random_split(balanced, train_frac=0.7, validation_frac=0.1)
    sizes = [len(train), len(validation), len(test)]
    n = len(balanced)
    rounded = [round(n * 0.7), round(n * 0.7) + round(n * 0.1)]
    if sizes != g["split_sizes"] and sizes[:2] == [rounded[0], rounded[1] - rounded[0]]:
        raise AssertionError(
            f"sizes {sizes} come from round(): the book cuts with int(len(df) * frac), which "
            "rounds down (§6.2)"
        )
    if sizes != g["split_sizes"] and sizes[0] == g["split_sizes"][0]:
        raise AssertionError(
            f"validation holds {sizes[1]} rows, the book's {g['split_sizes'][1]}: "
            "validation_end = train_end + int(len(df) * validation_frac) — the validation "
            "cut starts at train_end (§6.2)"
        )
    assert_equal(
        sizes,
        g["split_sizes"],
        name="[train, validation, test] sizes",
        why="70/10/20 of 1494: train_end = int(len(df) * train_frac), validation_end = train_end "
        "+ int(len(df) * validation_frac) (book §6.2)",
    )
    together = pd.concat([train, validation, test])
    assert sorted(together["Text"]) == sorted(balanced["Text"]), "nothing lost or repeated"
    assert train["Text"].tolist() != balanced["Text"].head(len(train)).tolist(), "shuffled"


@pytest.mark.exercise("random_split")
def test_random_split_cuts_train_validation_test_in_that_order(impl, ref, raw, g):
    balanced = map_labels(ref.create_balanced_dataset(raw))
    train, validation, test = impl.random_split(balanced, train_frac=0.7, validation_frac=0.1)
    shuffled = balanced.sample(frac=1, random_state=123).reset_index(drop=True)
    n_train, n_val = g["split_sizes"][:2]
    want = shuffled["Text"][n_train : n_train + n_val].tolist()
    if len(validation) == n_val and validation["Text"].tolist() != want:
        where = next(
            (
                f"rows [{i}:{i + n_val}]"
                for i in range(len(shuffled) - n_val + 1)
                if shuffled["Text"][i : i + n_val].tolist() == validation["Text"].tolist()
            ),
            "other rows",
        )
        raise AssertionError(
            f"validation has the right size but holds {where} of the shuffled frame: the book "
            f"cuts in the order train [0:{n_train}], validation [{n_train}:{n_train + n_val}], "
            "test the rest (§6.2)"
        )


@pytest.mark.exercise("random_split")
def test_random_split_is_the_books_shuffle(impl, ref, raw):
    balanced = map_labels(ref.create_balanced_dataset(raw))
    train, _, test = impl.random_split(balanced, train_frac=0.7, validation_frac=0.1)
    shuffled = balanced.sample(frac=1, random_state=123).reset_index(drop=True)
    assert train["Text"].tolist() == shuffled["Text"][: len(train)].tolist(), (
        "df.sample(frac=1, random_state=123).reset_index(drop=True), then cut (book §6.2)"
    )
    assert test.index[0] == len(shuffled) - len(test), "the index is reset after the shuffle"


@pytest.mark.exercise("SpamDataset")
def test_spam_dataset_pads_after_the_text(impl, splits, tokenizer, g):
    dataset = impl.SpamDataset(splits["train"], tokenizer=tokenizer)
    ids = dataset[0][0].tolist()
    n = len(tokenizer.encode(pd.read_csv(splits["train"]).iloc[0]["Text"]))
    if ids[: len(ids) - n] == [50256] * (len(ids) - n) and ids[0] == 50256:
        raise AssertionError(
            f"the first {len(ids) - n} ids are the pad token: the padding is put before the "
            "text (left padding); the book pads after it (right padding), "
            "ids + [pad_token_id] * (max_length - len(ids)), so the last token's logits read "
            "after the text (§6.3)"
        )


@pytest.mark.exercise("SpamDataset")
def test_spam_dataset_pads_to_the_longest(impl, splits, tokenizer, g):
    dataset = impl.SpamDataset(splits["train"], tokenizer=tokenizer)
    assert_equal(dataset.max_length, g["max_length"], name="max_length", why="book §6.3")
    assert_equal(len(dataset), g["split_sizes"][0], name="len(dataset)", why="one item per row")
    ids, label = dataset[0]
    assert ids.shape == (g["max_length"],) and ids.dtype == torch.long, "padded int64 ids"
    assert label.dtype == torch.long and label.item() in LABELS.values(), "an int64 0/1 label"
    first = pd.read_csv(splits["train"]).iloc[0]
    want = tokenizer.encode(first["Text"])
    assert_equal(ids[: len(want)].tolist(), want, name="ids of the first text")
    assert (ids[len(want) :] == 50256).all(), "padded with the end-of-text id (book §6.3)"
    assert_equal(label.item(), int(first["Label"]), name="label of the first row")


@pytest.mark.exercise("SpamDataset")
def test_spam_dataset_truncates_and_pads_to_max_length(impl, splits, tokenizer, g):
    short = impl.SpamDataset(splits["train"], tokenizer=tokenizer, max_length=10)
    assert short[0][0].shape == (10,), "texts longer than max_length are truncated"
    long = impl.SpamDataset(
        splits["train"], tokenizer=tokenizer, max_length=g["exercise_6_1_max_length"]
    )
    ids = long[0][0]
    assert ids.shape == (1024,), "exercise 6.1: pad to the model's context length"
    assert ids[-1].item() == 50256, "padding uses the end-of-text id"


@pytest.mark.exercise("SpamDataset")
def test_book_loaders_as_printed(impl, splits, tokenizer, g):
    """The book's §6.3 code with your SpamDataset: val/test padded to the training length."""
    train_dataset = impl.SpamDataset(splits["train"], tokenizer=tokenizer)
    val_dataset = impl.SpamDataset(
        splits["validation"], tokenizer=tokenizer, max_length=train_dataset.max_length
    )
    test_dataset = impl.SpamDataset(
        splits["test"], tokenizer=tokenizer, max_length=train_dataset.max_length
    )
    torch.manual_seed(123)
    loaders = [
        DataLoader(train_dataset, batch_size=8, shuffle=True, drop_last=True),
        DataLoader(val_dataset, batch_size=8, drop_last=False),
        DataLoader(test_dataset, batch_size=8, drop_last=False),
    ]
    n = [len(loader) for loader in loaders]
    assert_equal(n, g["num_batches"], name="batches", why="batch 8, drop_last on train (§6.3)")
    inputs, labels = next(iter(loaders[0]))
    assert_equal(list(inputs.shape), g["input_batch_shape"], name="input batch shape", why="§6.3")
    assert_equal(list(labels.shape), g["label_batch_shape"], name="label batch shape", why="§6.3")


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.exercise("create_balanced_dataset")
@pytest.mark.beyond_book
def test_balance_needs_label_column(impl):
    with pytest.raises(ValueError, match="Label"):
        impl.create_balanced_dataset(pd.DataFrame({"Text": ["a"]}))


@pytest.mark.exercise("random_split")
@pytest.mark.beyond_book
@pytest.mark.parametrize(("train_frac", "validation_frac"), [(1.5, 0.1), (0.8, 0.3), (-1, 0)])
def test_random_split_bad_fractions(impl, raw, train_frac, validation_frac):
    with pytest.raises(ValueError, match="frac"):
        impl.random_split(raw, train_frac=train_frac, validation_frac=validation_frac)


@pytest.mark.exercise("SpamDataset")
@pytest.mark.beyond_book
def test_spam_dataset_bad_csv(impl, tmp_path, tokenizer):
    path = tmp_path / "unmapped.csv"
    pd.DataFrame({"Label": ["ham"], "Text": ["hi"]}).to_csv(path, index=None)
    with pytest.raises(ValueError, match=r"unmapped\.csv.*row 0"):
        impl.SpamDataset(path, tokenizer=tokenizer)


@pytest.mark.exercise("SpamDataset")
def test_spam_dataset_missing_file(impl, tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        impl.SpamDataset(tmp_path / "missing.csv", tokenizer=tokenizer)


@pytest.mark.exercise("SpamDataset")
@pytest.mark.beyond_book
def test_spam_dataset_bad_max_length(impl, splits, tokenizer):
    with pytest.raises(ValueError, match="max_length"):
        impl.SpamDataset(splits["train"], tokenizer=tokenizer, max_length=0)


@pytest.mark.exercise("SpamDataset")
def test_every_text_is_truncated_to_max_length(impl, splits, tokenizer):
    dataset = impl.SpamDataset(splits["train"], tokenizer=tokenizer, max_length=10)
    texts = pd.read_csv(splits["train"])["Text"]
    for index, text in enumerate(texts):
        want = tokenizer.encode(text)[:10]
        want += [50256] * (10 - len(want))
        got = dataset[index][0].tolist()
        if got != want:
            raise AssertionError(
                f"SpamDataset(max_length=10)[{index}]: expected the text's first 10 token ids "
                f"(padded with 50256), got {len(got)} ids — with max_length given, the book "
                "truncates every encoded text to max_length before padding: "
                "encoded_text[:self.max_length] (§6.3); the text starts "
                f"{tokenizer.decode(want)[:60]!r}"
            )


@pytest.mark.exercise("random_split")
def test_random_split_cuts_with_int_on_a_size_where_round_differs(impl):
    df = pd.DataFrame(
        {"Label": [i % 2 for i in range(1007)], "Text": [f"t{i}" for i in range(1007)]}
    )
    train, validation, test = impl.random_split(df, train_frac=0.7, validation_frac=0.1)
    assert_equal(
        [len(train), len(validation), len(test)],
        [704, 100, 203],
        name="[train, validation, test] sizes of 1007 rows",
        why="the book cuts with int(), which truncates: int(1007 * 0.7) = 704, where round() "
        "gives 705 (§6.2)",
    )
