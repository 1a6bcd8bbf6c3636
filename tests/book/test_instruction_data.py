"""Instruction data stage against book §7.2-7.4: prompts, split, dataset, the §7.3 loaders.

Reading the JSON file and the kit's loader function are tested in tests/kit/test_data_instruction.py.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.utils.data import DataLoader

from ftkit.asserts import assert_equal, assert_tensor_equal, assert_tokens_equal
from ftkit.data.instruction import load_instruction_data

pytestmark = pytest.mark.stage("instruction SFT")


@pytest.fixture(scope="module")
def tokenizer():
    # Tooling, not an exercise: imported directly (also, ftkit.impl cannot see the
    # lru_cache-wrapped get_tokenizer as a function).
    from ftkit.io.tokenizer import get_tokenizer

    return get_tokenizer()


@pytest.fixture(scope="module")
def data():
    return load_instruction_data()


@pytest.fixture
def g(golden):
    return golden("instruction_data")


def response_text(entry: dict) -> str:
    """What the book's InstructionDataset appends to the prompt (book §7.2)."""
    return f"\n\n### Response:\n{entry['output']}"


def test_the_books_file(data, g):
    assert_equal(len(data), g["num_entries"], name="number of entries", why="book §7.2")
    assert_equal(data[50], g["entry_50"], name="data[50]", why="book §7.2 prints this entry")
    assert_equal(data[999], g["entry_999"], name="data[999]", why="an entry with empty input")


# --- prompts -------------------------------------------------------------------------------


@pytest.mark.exercise("format_input")
@pytest.mark.parametrize("index", [50, 999])
def test_alpaca_prompt_as_printed(impl, data, g, index):
    entry = data[index]
    assert_equal(
        impl.format_input(entry) + response_text(entry),
        g[f"entry_{index}_formatted"],
        name=f"format_input(data[{index}]) + the response text",
        why="the Alpaca template; no '### Input:' section when the input is empty (book §7.2)",
    )


@pytest.mark.exercise("format_input")
@pytest.mark.beyond_book
@pytest.mark.book_exercise("7.1")
@pytest.mark.parametrize("index", [50, 999])
def test_phi3_prompt_as_in_exercise_solution(impl, data, g, index):
    assert_equal(
        impl.format_input(data[index], style="phi3"),
        g[f"entry_{index}_phi3_input"],
        name="format_input(entry, style='phi3')",
        why="the Phi-3 template of exercise 7.1",
    )


@pytest.mark.exercise("format_input")
@pytest.mark.beyond_book
def test_unknown_style_lists_the_styles(impl, data):
    with pytest.raises(ValueError, match=r"chatml.*alpaca.*phi3"):
        impl.format_input(data[0], style="chatml")


@pytest.mark.exercise("format_input")
@pytest.mark.beyond_book
def test_entry_missing_a_key_is_named(impl):
    with pytest.raises(ValueError, match="'instruction'"):
        impl.format_input({"input": "", "output": "x"})


# --- split ---------------------------------------------------------------------------------


@pytest.mark.exercise("split_data")
def test_split_sizes(impl, data, g):
    train, test, val = impl.split_data(data)
    sizes = [len(train), len(test), len(val)]
    expected = [g["train_size"], g["test_size"], g["validation_size"]]
    assert_equal(sizes, expected, name="[train, test, validation] sizes", why="85/10/5 (book §7.2)")
    assert train + test + val == list(data), "the split keeps the file's order and loses nothing"


@pytest.mark.exercise("split_data")
@pytest.mark.beyond_book
@pytest.mark.parametrize(
    ("train_frac", "test_frac"), [(1.2, 0.1), (-0.1, 0.1), (0.9, 0.2), ("0.85", 0.1)]
)
def test_bad_fractions(impl, data, train_frac, test_frac):
    with pytest.raises(ValueError, match="frac"):
        impl.split_data(data, train_frac=train_frac, test_frac=test_frac)


# --- dataset -------------------------------------------------------------------------------


@pytest.mark.exercise("InstructionDataset")
@pytest.mark.parametrize("index", [50, 999])
def test_dataset_items_are_the_tokenized_prompt_and_response(impl, data, tokenizer, g, index):
    dataset = impl.InstructionDataset([data[index], data[0]], tokenizer=tokenizer)
    assert len(dataset) == 2, "len(dataset) is the number of entries"
    assert_tokens_equal(
        list(dataset[0]),
        tokenizer.encode(g[f"entry_{index}_formatted"]),
        tokenizer,
        name="dataset[0]",
        why="format_input(entry) + '\\n\\n### Response:\\n' + output, pre-tokenized (book §7.3)",
    )


@pytest.mark.exercise("InstructionDataset")
@pytest.mark.beyond_book
@pytest.mark.book_exercise("7.1")
def test_dataset_phi3_style(impl, data, tokenizer, g):
    dataset = impl.InstructionDataset([data[50]], tokenizer=tokenizer, style="phi3")
    text = g["entry_50_phi3_input"] + g["phi3_response_prefix"] + data[50]["output"]
    assert_tokens_equal(
        list(dataset[0]),
        tokenizer.encode(text),
        tokenizer,
        name="dataset[0]",
        why="exercise 7.1's solution appends '\\n<|assistant|>:\\n' + output",
    )


@pytest.mark.exercise("InstructionDataset")
@pytest.mark.beyond_book
@pytest.mark.book_exercise("7.2")
def test_masked_dataset_items_carry_the_prompt_length(impl, ref, data, tokenizer, g):
    dataset = impl.InstructionDataset([data[50]], tokenizer=tokenizer, mask_instruction=True)
    prompt_length, token_ids = dataset[0]
    assert_equal(
        prompt_length,
        len(tokenizer.encode(ref.format_input(data[50]))),
        name="prompt_length",
        why="the token count of format_input(entry) alone (exercise 7.2)",
    )
    assert_tokens_equal(
        list(token_ids), tokenizer.encode(g["entry_50_formatted"]), tokenizer, name="token_ids"
    )


@pytest.mark.exercise("InstructionDataset")
@pytest.mark.beyond_book
def test_dataset_bad_entry_names_its_index(impl, tokenizer, data):
    with pytest.raises(ValueError, match=r"entry 1.*'output'"):
        impl.InstructionDataset([data[0], {"instruction": "x", "input": ""}], tokenizer=tokenizer)


@pytest.mark.exercise("InstructionDataset")
@pytest.mark.beyond_book
def test_dataset_unknown_style(impl, tokenizer, data):
    with pytest.raises(ValueError, match="style"):
        impl.InstructionDataset([data[0]], tokenizer=tokenizer, style="nope")


# --- the book's §7.3 loaders, built from your dataset and collate function -----------------


def book_loaders(dataset, collate_fn, tokenizer, train, val):
    """The book's §7.3 code: seed 123, batch 8, collate with allowed_max_length=1024."""
    collate = partial(collate_fn, device="cpu", allowed_max_length=1024)
    torch.manual_seed(123)
    train_loader = DataLoader(
        dataset(train, tokenizer=tokenizer),
        batch_size=8,
        collate_fn=collate,
        shuffle=True,
        drop_last=True,
        num_workers=0,
    )
    val_loader = DataLoader(
        dataset(val, tokenizer=tokenizer),
        batch_size=8,
        collate_fn=collate,
        shuffle=False,
        drop_last=False,
        num_workers=0,
    )
    return train_loader, val_loader


def check_book_batches(train_loader, val_loader, ref, tokenizer, train, val, g):
    batches = list(train_loader)
    shapes = [list(inputs.shape) for inputs, _ in batches]
    why = (
        "torch.manual_seed(123), shuffled train loader, padding to each batch's longest (book §7.4)"
    )
    assert_equal(shapes[:10], g["first_train_input_shapes"], name="first input shapes", why=why)
    tail = g["last_train_input_shapes"]
    assert_equal(shapes[-len(tail) :], tail, name="last input shapes", why=why)
    assert len(batches) == len(train) // 8, "drop_last=True: 935 // 8 = 116 batches"
    inputs, targets = batches[-1]
    assert_tensor_equal(inputs[0], g["last_batch_first_inputs"], name="inputs[0]", why=why)
    assert_tensor_equal(
        targets[0],
        g["last_batch_first_targets"],
        name="targets[0]",
        why="one end-of-text target, then -100 for the padding (book §7.4)",
    )
    for inputs, targets in batches:
        assert inputs.shape == targets.shape, "inputs and targets have the same shape"

    assert len(val_loader) == -(-len(val) // 8), "validation keeps its last partial batch"
    first_val_inputs, _ = next(iter(val_loader))
    ref_dataset = ref.InstructionDataset(val[:8], tokenizer)
    ref_val = ref.custom_collate_fn([ref_dataset[i] for i in range(len(ref_dataset))])[0]
    assert_tensor_equal(first_val_inputs, ref_val, name="val inputs", why="val is not shuffled")


@pytest.mark.exercise("custom_collate_fn")
def test_your_collate_batches_the_books_dataset_as_printed(impl, ref, data, tokenizer, g):
    """Your collate function on the book's dataset (so a bug elsewhere is not blamed on it)."""
    train, _, val = ref.split_data(data)
    loaders = book_loaders(ref.InstructionDataset, impl.custom_collate_fn, tokenizer, train, val)
    check_book_batches(*loaders, ref, tokenizer, train, val, g)


@pytest.mark.exercise("InstructionDataset")
def test_your_dataset_batches_with_the_books_collate_as_printed(impl, ref, data, tokenizer, g):
    """Your dataset batched by the book's collate function."""
    train, _, val = ref.split_data(data)
    loaders = book_loaders(impl.InstructionDataset, ref.custom_collate_fn, tokenizer, train, val)
    check_book_batches(*loaders, ref, tokenizer, train, val, g)


@pytest.mark.exercise("split_data")
def test_split_cuts_with_int_on_a_size_where_round_differs(impl):
    data = [{"instruction": f"i{n}", "input": "", "output": f"o{n}"} for n in range(1007)]
    train, test, val = impl.split_data(data)
    assert_equal(
        [len(train), len(test), len(val)],
        [855, 100, 52],
        name="[train, test, validation] sizes of 1007 entries",
        why="the book cuts with int(), which truncates: int(1007 * 0.85) = 855, where round() "
        "gives 856 (§7.2)",
    )
