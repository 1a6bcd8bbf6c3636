"""Instruction data stage against book §7.2–7.4: loading, prompts, split, dataset, loaders."""

from __future__ import annotations

import json

import pytest
import torch

from ftkit.asserts import assert_equal, assert_tensor_equal

pytestmark = pytest.mark.stage("instruction SFT")


@pytest.fixture(scope="module")
def tokenizer():
    # Tooling, not an exercise: imported directly (also, ftkit.impl cannot see the
    # lru_cache-wrapped get_tokenizer as a function).
    from ftkit.io.tokenizer import get_tokenizer

    return get_tokenizer()


@pytest.fixture(scope="module")
def data(ref):
    return ref.load_instruction_data()


@pytest.fixture
def g(golden):
    return golden("instruction_data")


# --- loading -------------------------------------------------------------------------------


@pytest.mark.exercise("load_instruction_data")
def test_load_instruction_data_reads_the_books_file(impl, g):
    data = impl.load_instruction_data()
    assert_equal(len(data), g["num_entries"], name="number of entries", why="book §7.2")
    assert_equal(data[50], g["entry_50"], name="data[50]", why="book §7.2 prints this entry")
    assert_equal(
        data[999], g["entry_999"], name="data[999]", why="book §7.2: an entry with empty input"
    )


@pytest.mark.exercise("load_instruction_data")
def test_load_instruction_data_from_a_path(impl, tmp_path, g):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([g["entry_50"], g["entry_999"]]), encoding="utf-8")
    assert_equal(impl.load_instruction_data(path), [g["entry_50"], g["entry_999"]], name="data")


@pytest.mark.exercise("load_instruction_data")
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
def test_bad_entries_name_file_index_and_key(impl, tmp_path, entries, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    with pytest.raises(ValueError, match=match) as err:
        impl.load_instruction_data(path)
    assert "bad.json" in str(err.value), "the error names the file"


@pytest.mark.exercise("load_instruction_data")
def test_bad_json_names_file_and_position(impl, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"instruction": "a",\n "input": }]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json.*line 2") as err:
        impl.load_instruction_data(path)
    assert "column" in str(err.value)


@pytest.mark.exercise("load_instruction_data")
def test_missing_file_is_an_error(impl, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        impl.load_instruction_data(tmp_path / "nope.json")


# --- prompts -------------------------------------------------------------------------------


@pytest.mark.exercise("format_input", "format_response")
@pytest.mark.parametrize("index", [50, 999])
def test_alpaca_prompt_and_response_as_printed(impl, data, g, index):
    entry = data[index]
    text = impl.format_input(entry) + impl.format_response(entry)
    assert_equal(
        text,
        g[f"entry_{index}_formatted"],
        name=f"format_input(data[{index}]) + format_response(data[{index}])",
        why="the Alpaca template; no '### Input:' section when the input is empty (book §7.2)",
    )


@pytest.mark.exercise("format_input", "format_response")
@pytest.mark.beyond_book
@pytest.mark.book_exercise("7.1")
@pytest.mark.parametrize("index", [50, 999])
def test_phi3_prompt_as_in_exercise_solution(impl, data, g, index):
    entry = data[index]
    assert_equal(
        impl.format_input(entry, style="phi3"),
        g[f"entry_{index}_phi3_input"],
        name="format_input(entry, style='phi3')",
        why="the Phi-3 template of exercise 7.1",
    )
    assert_equal(
        impl.format_response(entry, style="phi3"),
        g["phi3_response_prefix"] + entry["output"],
        name="format_response(entry, style='phi3')",
        why="exercise 7.1's solution appends '\\n<|assistant|>:\\n' + output",
    )


@pytest.mark.exercise("format_response")
def test_alpaca_response_is_header_plus_output(impl, data):
    assert_equal(
        impl.format_response(data[50]),
        "\n\n### Response:\n" + data[50]["output"],
        name="format_response",
        why="book §7.2: desired_response = f'\\n\\n### Response:\\n{output}'",
    )


@pytest.mark.exercise("format_input", "format_response")
@pytest.mark.beyond_book
@pytest.mark.parametrize("name", ["format_input", "format_response"])
def test_unknown_style_lists_the_styles(impl, data, name):
    with pytest.raises(ValueError, match=r"chatml.*alpaca.*phi3"):
        getattr(impl, name)(data[0], style="chatml")


@pytest.mark.exercise("format_input", "format_response")
@pytest.mark.beyond_book
@pytest.mark.parametrize("name", ["format_input", "format_response"])
def test_entry_missing_a_key_is_named(impl, name):
    with pytest.raises(ValueError, match="'instruction'"):
        getattr(impl, name)({"input": "", "output": "x"})


# --- split ---------------------------------------------------------------------------------


@pytest.mark.exercise("split_data")
def test_split_sizes(impl, data, g):
    train, test, val = impl.split_data(data)
    sizes = [len(train), len(test), len(val)]
    expected = [g["train_size"], g["test_size"], g["validation_size"]]
    assert_equal(sizes, expected, name="[train, test, validation] sizes", why="85/10/5 (book §7.2)")
    assert train + test + val == list(data), "the split keeps the file's order and loses nothing"


@pytest.mark.exercise("split_data")
@pytest.mark.parametrize(
    ("train_frac", "test_frac"), [(1.2, 0.1), (-0.1, 0.1), (0.9, 0.2), ("0.85", 0.1)]
)
def test_bad_fractions(impl, data, train_frac, test_frac):
    with pytest.raises(ValueError, match="frac"):
        impl.split_data(data, train_frac=train_frac, test_frac=test_frac)


# --- dataset -------------------------------------------------------------------------------


@pytest.mark.exercise("InstructionDataset")
def test_dataset_items_are_the_tokenized_prompt_and_response(impl, ref, data, tokenizer):
    entries = [data[50], data[999]]
    dataset = impl.InstructionDataset(entries, tokenizer)
    assert len(dataset) == 2, "len(dataset) is the number of entries"
    for i, entry in enumerate(entries):
        want = tokenizer.encode(ref.format_input(entry) + ref.format_response(entry))
        assert_equal(list(dataset[i]), want, name=f"dataset[{i}]", why="pre-tokenized (book §7.3)")


@pytest.mark.exercise("InstructionDataset")
@pytest.mark.beyond_book
@pytest.mark.book_exercise("7.1")
def test_dataset_phi3_style(impl, ref, data, tokenizer):
    dataset = impl.InstructionDataset([data[50]], tokenizer, style="phi3")
    text = ref.format_input(data[50], "phi3") + ref.format_response(data[50], "phi3")
    assert_equal(list(dataset[0]), tokenizer.encode(text), name="dataset[0]", why="exercise 7.1")


@pytest.mark.exercise("InstructionDataset")
@pytest.mark.beyond_book
@pytest.mark.book_exercise("7.2")
def test_masked_dataset_items_carry_the_prompt_length(impl, ref, data, tokenizer):
    dataset = impl.InstructionDataset([data[50]], tokenizer, mask_instruction=True)
    prompt_length, token_ids = dataset[0]
    assert_equal(
        prompt_length,
        len(tokenizer.encode(ref.format_input(data[50]))),
        name="prompt_length",
        why="the token count of format_input(entry) alone (exercise 7.2)",
    )
    full = ref.format_input(data[50]) + ref.format_response(data[50])
    assert_equal(list(token_ids), tokenizer.encode(full), name="token_ids")


@pytest.mark.exercise("InstructionDataset")
@pytest.mark.beyond_book
def test_dataset_bad_entry_names_its_index(impl, tokenizer, data):
    with pytest.raises(ValueError, match=r"entry 1.*'output'"):
        impl.InstructionDataset([data[0], {"instruction": "x", "input": ""}], tokenizer)


@pytest.mark.exercise("InstructionDataset")
@pytest.mark.beyond_book
def test_dataset_unknown_style(impl, tokenizer, data):
    with pytest.raises(ValueError, match="style"):
        impl.InstructionDataset([data[0]], tokenizer, style="nope")


# --- loaders -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaders(ref, data, tokenizer):
    train, test, val = ref.split_data(data)
    return train, test, val


@pytest.mark.exercise("create_instruction_loaders")
def test_train_loader_batches_as_printed(impl, ref, loaders, tokenizer, g):
    train, test, val = loaders
    train_loader, val_loader, test_loader = impl.create_instruction_loaders(
        train, val, test, tokenizer
    )
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
    assert len(test_loader) == -(-len(test) // 8), "test keeps its last partial batch"
    first_val_inputs, _ = next(iter(val_loader))
    ref_val = ref_first_batch(ref, val, tokenizer)
    assert_tensor_equal(first_val_inputs, ref_val, name="val inputs", why="val is not shuffled")


def ref_first_batch(ref, entries, tokenizer):
    dataset = ref.InstructionDataset(entries[:8], tokenizer)
    return ref.custom_collate_fn([dataset[i] for i in range(len(dataset))])[0]


@pytest.mark.exercise("create_instruction_loaders")
@pytest.mark.book_exercise("7.2")
def test_loaders_mask_instruction_and_truncate(impl, ref, loaders, tokenizer):
    train, test, val = loaders
    _, val_loader, _ = impl.create_instruction_loaders(
        train, val[:8], test, tokenizer, mask_instruction=True, allowed_max_length=40
    )
    inputs, targets = next(iter(val_loader))
    assert inputs.shape[1] <= 40, "allowed_max_length cuts the batch"
    first_prompt = len(tokenizer.encode(ref.format_input(val[0])))
    assert (targets[0, : min(first_prompt - 1, 40)] == -100).all(), "prompt targets are masked"


@pytest.mark.exercise("create_instruction_loaders")
@pytest.mark.parametrize(
    ("kwargs", "match"), [({"batch_size": 0}, "batch_size"), ({"allowed_max_length": 0}, "allowed")]
)
def test_loaders_bad_arguments(impl, loaders, tokenizer, kwargs, match):
    train, test, val = loaders
    with pytest.raises(ValueError, match=match):
        impl.create_instruction_loaders(train, val, test, tokenizer, **kwargs)


@pytest.mark.exercise("create_instruction_loaders")
def test_loader_seed_makes_the_order_reproducible(impl, loaders, tokenizer):
    train, test, val = loaders
    first = [
        next(iter(impl.create_instruction_loaders(train, val, test, tokenizer, seed=s)[0]))[0]
        for s in (7, 7)
    ]
    assert torch.equal(first[0], first[1]), "the same seed gives the same first batch"
