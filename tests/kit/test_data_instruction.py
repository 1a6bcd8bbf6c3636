"""The kit's chapter 7 data room (`ftkit/data/instruction.py`): reading the JSON file, the loaders."""

from __future__ import annotations

import json

import pytest
import torch

from ftkit.asserts import assert_equal, assert_tensor_equal
from ftkit.data.instruction import create_instruction_loaders, load_instruction_data
from ftkit.io.tokenizer import get_tokenizer
from reference.instruction_data import format_input, split_data


@pytest.fixture(scope="module")
def data():
    return load_instruction_data()


@pytest.fixture(scope="module")
def splits(data):
    return split_data(data)


@pytest.fixture
def g(golden):
    return golden("instruction_data")


# --- load_instruction_data -------------------------------------------------------------------


def test_reads_the_books_file(data, g):
    assert_equal(len(data), g["num_entries"], name="number of entries", why="book §7.2")
    assert_equal(data[50], g["entry_50"], name="data[50]", why="book §7.2 prints this entry")


def test_reads_a_path(tmp_path, g):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([g["entry_50"], g["entry_999"]]), encoding="utf-8")
    assert_equal(load_instruction_data(path), [g["entry_50"], g["entry_999"]], name="data")


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        (
            [{"instruction": "a", "input": "", "output": "b"}, {"instruction": "a", "input": ""}],
            r"entry 1.*'output'",
        ),
        ([{"instruction": "a", "input": 3, "output": "b"}], r"entry 0.*'input'.*string"),
        (["just text"], r"entry 0"),
        ({"instruction": "a"}, r"list"),
    ],
)
def test_bad_entries_name_file_index_and_key(tmp_path, entries, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    with pytest.raises(ValueError, match=match) as err:
        load_instruction_data(path)
    assert "bad.json" in str(err.value), "the error names the file"


def test_bad_json_names_file_and_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"instruction": "a",\n "input": }]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json.*line 2") as err:
        load_instruction_data(path)
    assert "column" in str(err.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_instruction_data(tmp_path / "nope.json")


# --- create_instruction_loaders --------------------------------------------------------------


def test_loaders_as_printed(splits, g):
    train, test, val = splits
    train_loader, val_loader, test_loader = create_instruction_loaders(
        train, val, test, get_tokenizer()
    )
    batches = list(train_loader)
    shapes = [list(inputs.shape) for inputs, _ in batches]
    assert_equal(shapes[:10], g["first_train_input_shapes"], name="first input shapes")
    assert len(batches) == len(train) // 8, "drop_last=True: 935 // 8 = 116 batches"
    assert_tensor_equal(batches[-1][1][0], g["last_batch_first_targets"], name="targets[0]")
    assert len(val_loader) == -(-len(val) // 8), "validation keeps its last partial batch"
    assert len(test_loader) == -(-len(test) // 8), "test keeps its last partial batch"


@pytest.mark.book_exercise("7.2")
def test_loaders_mask_instruction_and_truncate(splits):
    train, test, val = splits
    _, val_loader, _ = create_instruction_loaders(
        train, val[:8], test, get_tokenizer(), mask_instruction=True, allowed_max_length=40
    )
    inputs, targets = next(iter(val_loader))
    assert inputs.shape[1] <= 40, "allowed_max_length cuts the batch"
    first_prompt = len(get_tokenizer().encode(format_input(val[0])))
    assert (targets[0, : min(first_prompt - 1, 40)] == -100).all(), "prompt targets are masked"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"allowed_max_length": 0}, "allowed"),
    ],
)
def test_loaders_bad_arguments(splits, kwargs, match):
    train, test, val = splits
    with pytest.raises(ValueError, match=match):
        create_instruction_loaders(train, val, test, get_tokenizer(), **kwargs)


def test_loader_seed_makes_the_order_reproducible(splits):
    train, test, val = splits
    first = [
        next(iter(create_instruction_loaders(train, val, test, get_tokenizer(), seed=s)[0]))[0]
        for s in (7, 7)
    ]
    assert torch.equal(first[0], first[1]), "the same seed gives the same first batch"
