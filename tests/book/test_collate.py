"""Collate functions against the values book §7.3 prints, the book's 50256 trap, and bad input."""

from __future__ import annotations

import pytest
import torch

from ftkit.asserts import assert_equal, assert_tensor_equal

pytestmark = pytest.mark.stage("collate")

WHY_PAD = "every item is padded with 50256 to the longest item + 1 (book §7.3)"
WHY_SHIFT = "the targets are the inputs shifted one position to the right (book §7.3)"
WHY_MASK = (
    "only the first end-of-text token of each row stays in the targets; later padding "
    "becomes -100 so cross_entropy ignores it (book §7.3)"
)


@pytest.fixture
def batch(golden):
    return golden("collate")["batch"]


@pytest.mark.exercise("custom_collate_draft_1")
def test_draft_1_pads_to_longest_item(impl, golden, batch):
    inputs = impl.custom_collate_draft_1(batch)
    assert_tensor_equal(inputs, golden("collate")["draft_1_inputs"], name="inputs", why=WHY_PAD)


@pytest.mark.exercise("custom_collate_draft_2")
def test_draft_2_returns_shifted_targets(impl, golden, batch):
    inputs, targets = impl.custom_collate_draft_2(batch)
    assert_tensor_equal(inputs, golden("collate")["draft_2_inputs"], name="inputs", why=WHY_PAD)
    assert_tensor_equal(
        targets, golden("collate")["draft_2_targets"], name="targets", why=WHY_SHIFT
    )


@pytest.mark.exercise("custom_collate_fn")
def test_custom_collate_fn_masks_all_but_first_end_of_text(impl, golden, batch):
    inputs, targets = impl.custom_collate_fn(batch)
    assert_tensor_equal(inputs, golden("collate")["inputs"], name="inputs", why=WHY_PAD)
    assert_tensor_equal(targets, golden("collate")["targets"], name="targets", why=WHY_MASK)


@pytest.mark.exercise("custom_collate_fn")
@pytest.mark.parametrize("limit", [1, 3, 5, 50])
def test_allowed_max_length_truncates_after_masking(impl, golden, batch, limit):
    inputs, targets = impl.custom_collate_fn(batch, allowed_max_length=limit)
    expected_inputs = torch.tensor(golden("collate")["inputs"])[:, :limit]
    expected_targets = torch.tensor(golden("collate")["targets"])[:, :limit]
    why = "allowed_max_length cuts inputs and targets after padding and masking (book §7.3)"
    assert_tensor_equal(inputs, expected_inputs, name="inputs", why=why)
    assert_tensor_equal(targets, expected_targets, name="targets", why=why)


@pytest.mark.exercise("custom_collate_fn")
def test_pad_token_and_ignore_index_are_parameters(impl, golden, batch):
    inputs, targets = impl.custom_collate_fn(batch, pad_token_id=7, ignore_index=-1)
    # Item [7, 8, 9] contains the chosen pad id 7 itself; only as its first input, so no target.
    swap = {50256: 7, -100: -1}
    expected_inputs = [[swap.get(t, t) for t in row] for row in golden("collate")["inputs"]]
    expected_targets = [[swap.get(t, t) for t in row] for row in golden("collate")["targets"]]
    assert_tensor_equal(inputs, expected_inputs, name="inputs", why=WHY_PAD)
    assert_tensor_equal(targets, expected_targets, name="targets", why=WHY_MASK)


@pytest.mark.exercise("custom_collate_draft_2", "custom_collate_fn")
@pytest.mark.parametrize("name", ["custom_collate_draft_2", "custom_collate_fn"])
def test_outputs_are_int64_on_the_requested_device(impl, batch, name):
    inputs, targets = getattr(impl, name)(batch, device="cpu")
    for label, tensor in (("inputs", inputs), ("targets", targets)):
        assert tensor.dtype == torch.long, f"{label}: embedding lookups need int64 token ids"
        assert tensor.device.type == "cpu", f"{label}: expected the requested device 'cpu'"


@pytest.mark.exercise("custom_collate_fn")
def test_end_of_text_inside_the_text_is_kept_book_behaviour(impl):
    """The book's known trap, kept on purpose (book §7.3).

    The mask is computed on `targets == pad_token_id`, not on where padding starts.
    So when the text itself contains 50256, THAT target is the "first end-of-text"
    and is kept, while the real end-of-text appended after the text is replaced by
    -100: the model is never taught to stop at the true end of such an example.
    """
    text = [1, 50256, 2, 3]
    inputs, targets = impl.custom_collate_fn([text, [4, 5, 6, 7, 8]])
    assert_tensor_equal(inputs[0], [1, 50256, 2, 3, 50256], name="inputs[0]", why=WHY_PAD)
    assert_tensor_equal(
        targets[0],
        [50256, 2, 3, -100, -100],
        name="targets[0]",
        why="the book masks by value: the 50256 inside the text is the first one, so the "
        "appended end-of-text at position 3 becomes -100 (book §7.3)",
    )


@pytest.mark.exercise("custom_collate_fn")
@pytest.mark.beyond_book
@pytest.mark.book_exercise("7.2")
def test_book_tuple_items_mask_the_prompt(impl):
    """Exercise 7.2: `(prompt_length, token_ids)` items mask targets that predict prompt tokens."""
    inputs, targets = impl.custom_collate_fn([(3, [10, 11, 12, 13, 14]), (1, [20, 21])])
    assert_tensor_equal(
        inputs, [[10, 11, 12, 13, 14], [20, 21, 50256, 50256, 50256]], name="inputs"
    )
    assert_tensor_equal(
        targets,
        [[-100, -100, 13, 14, 50256], [21, 50256, -100, -100, -100]],
        name="targets",
        why="targets[:prompt_length - 1] predict prompt tokens and become -100 (exercise 7.2)",
    )


@pytest.mark.exercise("custom_collate_fn")
@pytest.mark.beyond_book
@pytest.mark.book_exercise("7.2")
def test_masked_sample_matches_exercise_solution(impl, ref, golden):
    """The three-entry sample of the book's exercise 7.2 solution, batch of 3, row 1."""
    from ftkit.io.tokenizer import get_tokenizer

    g = golden("collate")
    dataset = ref.InstructionDataset(
        g["masked_sample_data"], get_tokenizer(), mask_instruction=True
    )
    inputs, targets = impl.custom_collate_fn([dataset[i] for i in range(len(dataset))])
    assert_equal(list(inputs.shape), [3, g["masked_sample_batch_width"]], name="inputs.shape")
    assert_tensor_equal(inputs[1], g["masked_sample_inputs"], name="inputs[1]", why=WHY_PAD)
    assert_tensor_equal(
        targets[1],
        g["masked_sample_targets"],
        name="targets[1]",
        why="instruction and input tokens are masked with -100; the response is kept "
        "(exercise 7.2)",
    )


def test_agrees_with_the_books_package_on_the_trap():
    """Peer check: the book's own custom_collate_fn does the same with 50256 inside a text."""
    from book_package import book_module

    from reference.collate import custom_collate_fn

    book_collate = book_module("ch07").custom_collate_fn

    batch = [[1, 50256, 2, 3], [50256, 5], [6, 7, 8, 9, 50256, 10]]
    for limit in (None, 4):
        ours = custom_collate_fn(batch, allowed_max_length=limit)
        theirs = book_collate(batch, allowed_max_length=limit)
        assert_tensor_equal(ours[0], theirs[0], name="inputs")
        assert_tensor_equal(ours[1], theirs[1], name="targets")


# --- bad input ---------------------------------------------------------------------------

COLLATES = ["custom_collate_draft_1", "custom_collate_draft_2", "custom_collate_fn"]


@pytest.mark.exercise("custom_collate_draft_1", "custom_collate_draft_2", "custom_collate_fn")
@pytest.mark.beyond_book
@pytest.mark.parametrize("name", COLLATES)
def test_empty_batch_is_an_error(impl, name):
    with pytest.raises(ValueError, match="empty batch"):
        getattr(impl, name)([])


@pytest.mark.exercise("custom_collate_draft_1", "custom_collate_draft_2", "custom_collate_fn")
@pytest.mark.beyond_book
@pytest.mark.parametrize("name", COLLATES)
@pytest.mark.parametrize(
    ("bad_item", "match"),
    [
        ([1, 2.5, 3], r"item 1, position 1.*integer"),
        ([1, "a"], r"item 1, position 1.*integer"),
        ([4, -3], r"item 1, position 1.*negative"),
        ([], r"item 1 is empty"),
        ("hello", r"item 1.*list of token ids"),
        (7, r"item 1.*list of token ids"),
    ],
)
def test_bad_item_names_its_index(impl, name, bad_item, match):
    with pytest.raises((TypeError, ValueError), match=match):
        getattr(impl, name)([[1, 2, 3], bad_item])


@pytest.mark.exercise("custom_collate_fn")
@pytest.mark.beyond_book
@pytest.mark.parametrize("limit", [0, -2, 2.5])
def test_bad_allowed_max_length(impl, limit):
    with pytest.raises(ValueError, match="allowed_max_length"):
        impl.custom_collate_fn([[1, 2]], allowed_max_length=limit)


@pytest.mark.exercise("custom_collate_draft_1", "custom_collate_draft_2", "custom_collate_fn")
@pytest.mark.beyond_book
@pytest.mark.parametrize("name", COLLATES)
def test_bad_pad_token_id(impl, name):
    with pytest.raises(ValueError, match="pad_token_id"):
        getattr(impl, name)([[1, 2]], pad_token_id=-1)


@pytest.mark.exercise("custom_collate_fn")
@pytest.mark.beyond_book
def test_mixed_item_formats_are_an_error(impl):
    with pytest.raises(TypeError, match="item 1"):
        impl.custom_collate_fn([(1, [1, 2]), [3, 4]])


@pytest.mark.exercise("custom_collate_fn")
@pytest.mark.beyond_book
@pytest.mark.parametrize("prompt_length", [0, 4])
def test_prompt_length_out_of_range(impl, prompt_length):
    with pytest.raises(ValueError, match=r"item 0: prompt_length"):
        impl.custom_collate_fn([(prompt_length, [1, 2, 3])])
