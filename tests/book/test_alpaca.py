"""Exercise 7.3: Alpaca-format data (a JSON file of entries) batched with allowed_max_length=512.

The real Alpaca 52k file is not in the offline data mirror, so this test writes a
generated Alpaca-format file (a few dozen entries, some far over 512 tokens). The
recipe's `dataset="alpaca"` option is tested in tests/kit/test_alpaca_recipe.py.
"""

from __future__ import annotations

import json
from functools import partial

import pytest
from alpaca_format import alpaca_entries
from torch.utils.data import DataLoader

from ftkit.asserts import assert_equal
from ftkit.data.instruction import load_instruction_data
from ftkit.io.tokenizer import get_tokenizer

pytestmark = pytest.mark.stage("instruction SFT")


@pytest.fixture
def alpaca_file(tmp_path):
    path = tmp_path / "alpaca_data.json"  # the name Alpaca's download has
    path.write_text(json.dumps(alpaca_entries()), encoding="utf-8")
    return path


@pytest.mark.exercise("InstructionDataset", "custom_collate_fn")
@pytest.mark.book_exercise("7.3")
def test_your_dataset_and_collate_cut_alpaca_entries_to_512_tokens(impl, ref, alpaca_file):
    """Exercise 7.3 with your code: batch an Alpaca-format file with allowed_max_length=512."""
    data = load_instruction_data(alpaca_file)
    assert_equal(data, alpaca_entries(), name="entries of the Alpaca-format file")
    train, _, _ = ref.split_data(data)
    collate = partial(impl.custom_collate_fn, allowed_max_length=512)
    loader = DataLoader(
        impl.InstructionDataset(train, tokenizer=get_tokenizer()), 4, collate_fn=collate
    )
    widths = [inputs.shape[1] for inputs, _ in loader]
    assert max(widths) == 512, f"long entries must be cut to 512 tokens (exercise 7.3); {widths}"
