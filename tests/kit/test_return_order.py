"""A learner's function that returns the book's values in another order is named as such (issue 19).

`random_split` returning (train, test, validation) used to be reported through the size
formula; every book function that returns a tuple now gets "your `random_split` returns
(train_df, test_df, validation_df); the book's returns (train_df, validation_df, test_df)".
The learners here are written the way learners write them, one module each.
"""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest
import torch

from ftkit.check.impl import Impl, original
from ftkit.check.returns import book_return_names, permutation
from ftkit.teach import explain_failure
from reference import spam_data, training
from tests.kit.test_check_sources import collate_source

SPLIT = """
def random_split(df, train_frac, validation_frac):
    df = df.sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    train_df = df[:train_end]
    validation_df = df[train_end:validation_end]
    test_df = df[validation_end:]
    return {order}
"""

EVALUATE = """
import torch

def calc_loss_loader(data_loader, model, device, num_batches=None):
    total = 0.0
    for i, (x, y) in enumerate(data_loader):
        if num_batches is not None and i >= num_batches:
            break
        logits = model(x)
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    return total / (num_batches or len(data_loader))

def evaluate_model(model, train_loader, val_loader, device, eval_iter):
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    model.train()
    return val_loss, train_loss
"""


def learner(tmp_path, monkeypatch, name: str, source: str) -> Impl:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return Impl(name)


def frame(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame({"Label": [i % 2 for i in range(n)], "Text": [f"t{i}" for i in range(n)]})


def test_a_split_returning_test_before_validation_is_named(tmp_path, monkeypatch):
    impl = learner(
        tmp_path, monkeypatch, "split_tvt", SPLIT.format(order="train_df, test_df, validation_df")
    )
    impl.random_split(frame(), 0.7, 0.1)
    text = explain_failure(AssertionError("validation holds 12 rows"), ["random_split"], impl)
    assert text == (
        "your `random_split` returns (train_df, test_df, validation_df); the book's returns "
        "(train_df, validation_df, test_df) — later code unpacks them in the book's order (§6.2)"
    )


def test_a_split_in_the_books_order_or_with_other_sizes_is_not_called_swapped(
    tmp_path, monkeypatch
):
    impl = learner(
        tmp_path, monkeypatch, "split_ok", SPLIT.format(order="train_df, validation_df, test_df")
    )
    impl.random_split(frame(), 0.7, 0.1)
    wrong = learner(
        tmp_path,
        monkeypatch,
        "split_round",
        SPLIT.format(order="train_df, validation_df, test_df").replace("int(", "round("),
    )
    wrong.random_split(frame(45), 0.7, 0.1)
    for each in (impl, wrong):
        text = explain_failure(AssertionError("sizes"), ["random_split"], each) or ""
        assert "returns (" not in text


def test_an_unshuffled_split_in_another_order_is_named_by_its_sizes(tmp_path, monkeypatch):
    source = SPLIT.format(order="train_df, test_df, validation_df").replace(
        "df.sample(frac=1, random_state=123).reset_index(drop=True)", "df"
    )
    impl = learner(tmp_path, monkeypatch, "split_unshuffled", source)
    impl.random_split(frame(), 0.7, 0.1)
    text = explain_failure(AssertionError("rows"), ["random_split"], impl) or ""
    assert text.startswith(
        "your `random_split` returns (train_df, test_df, validation_df) (judged by their shapes)"
    )


def test_an_evaluation_returning_the_validation_loss_first_is_named(tmp_path, monkeypatch):
    impl = learner(tmp_path, monkeypatch, "evaluate_swapped", EVALUATE)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 10), torch.nn.Dropout(0.5)).train()
    train = [(torch.randint(0, 10, (2, 4)), torch.randint(0, 10, (2, 4))) for _ in range(3)]
    val = [(torch.randint(0, 10, (2, 4)), torch.randint(0, 10, (2, 4))) for _ in range(3)]
    impl.evaluate_model(model, train, val, "cpu", eval_iter=2)
    with torch.no_grad():  # the recorded arguments are a copy: training on afterwards is fine
        model[0].weight.add_(1.0)
    text = explain_failure(AssertionError("val loss"), ["evaluate_model"], impl)
    assert text is not None and text.startswith(
        "your `evaluate_model` returns (val_loss, train_loss); the book's returns "
        "(train_loss, val_loss)"
    )


def test_a_collate_returning_targets_first_is_named_and_keeps_its_identity(tmp_path, monkeypatch):
    source = collate_source("allowed_max_length").replace(
        "return torch.stack(inputs_lst).to(device), torch.stack(targets_lst).to(device)",
        "return torch.stack(targets_lst).to(device), torch.stack(inputs_lst).to(device)",
    )
    impl = learner(tmp_path, monkeypatch, "collate_swapped", "import torch\n" + source)
    impl.custom_collate_fn([[1, 2, 3], [4, 5]])
    text = explain_failure(AssertionError("targets"), ["custom_collate_fn"], impl) or ""
    assert text.startswith("your `custom_collate_fn` returns (targets, inputs)")
    assert original(impl.custom_collate_fn).__module__ == "collate_swapped"


def test_the_books_return_names_and_ambiguous_orders():
    assert book_return_names(spam_data.random_split) == ("train_df", "validation_df", "test_df")
    assert book_return_names(training.train_model_simple) == (
        "train_losses",
        "val_losses",
        "track_tokens_seen",
    )
    assert book_return_names(training.calc_loss_batch) is None  # one value: nothing to swap
    assert permutation((2.0, 1.0), (1.0, 2.0)) == ((1, 0), "")
    assert permutation((1.0, 1.0), (1.0, 1.0)) is None  # the book's order fits
    assert permutation((3.0, 1.0), (1.0, 2.0)) is None  # other values, not another order
    assert permutation([1.0, 2.0], (1.0, 2.0)) is None


@pytest.mark.parametrize("impl_name", ["reference"])
def test_the_reference_is_not_recorded(impl_name):
    impl = Impl(impl_name)
    impl.random_split(frame(), 0.7, 0.1)
    assert impl.random_split is spam_data.random_split and not any(impl.returned.values())
