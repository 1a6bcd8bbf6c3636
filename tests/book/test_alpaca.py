"""Exercise 7.3: fine-tuning on Alpaca-format data (`dataset="alpaca"` or a JSON file), 512 tokens.

The real Alpaca 52k file is not in the offline data mirror, so these tests write a
generated Alpaca-format file (a few dozen entries, some far over 512 tokens) and
serve it as a file path and, through a temporary mirror, as the `alpaca-data` asset.
"""

from __future__ import annotations

import json

import pytest
import torch

from ftkit.asserts import assert_equal
from ftkit.io.tokenizer import get_tokenizer
from ftkit.recipes import instruct as recipe
from reference.instruction_data import split_data

pytestmark = pytest.mark.stage("instruction SFT")


def quiet(*_args) -> None:
    """A `say` that drops the recipe's progress lines."""


def alpaca_entries(n: int = 36) -> list[dict]:
    """Alpaca-format entries (instruction/input/output); every sixth is far longer than 512 tokens."""
    entries = []
    for i in range(n):
        long = i % 6 == 0
        entries.append(
            {
                "instruction": f"Describe item number {i}.",
                "input": ""
                if i % 2
                else f"Item {i} is a {'very ' * (700 if long else 3)}small box.",
                "output": f"Item {i} is a box. " * (40 if long else 2),
            }
        )
    return entries


@pytest.fixture
def alpaca_file(tmp_path):
    path = tmp_path / "alpaca_data.json"  # the name Alpaca's download has
    path.write_text(json.dumps(alpaca_entries()), encoding="utf-8")
    return path


def batch_widths(data: list[dict], allowed_max_length: int) -> list[int]:
    train, _, val = split_data(data)
    torch.manual_seed(123)
    loader, _ = recipe.make_loaders(
        train,
        val,
        get_tokenizer(),
        style="alpaca",
        mask_instruction=False,
        batch_size=8,
        allowed_max_length=allowed_max_length,
        device=torch.device("cpu"),
    )
    return [inputs.shape[1] for inputs, _ in loader]


@pytest.mark.exercise("create_instruction_loaders", "load_instruction_data")
@pytest.mark.book_exercise("7.3")
def test_your_loaders_cut_alpaca_entries_to_512_tokens(impl, ref, alpaca_file):
    """Exercise 7.3 with your code: load an Alpaca-format file, batch it with allowed_max_length=512."""
    data = impl.load_instruction_data(alpaca_file)
    assert_equal(data, alpaca_entries(), name="entries of the Alpaca-format file")
    train, test, val = ref.split_data(data)
    loaders = impl.create_instruction_loaders(
        train, val, test, get_tokenizer(), batch_size=4, allowed_max_length=512
    )
    widths = [inputs.shape[1] for loader in loaders for inputs, _ in loader]
    assert max(widths) == 512, f"long entries must be cut to 512 tokens (exercise 7.3); {widths}"


def test_alpaca_format_batches_are_cut_to_512_tokens():
    widths = batch_widths(alpaca_entries(), allowed_max_length=512)
    assert max(widths) == 512, f"the long entries must be truncated to 512 tokens; widths {widths}"
    assert max(batch_widths(alpaca_entries(), allowed_max_length=1024)) > 512, (
        "the generated data must hold entries over 512 tokens, or this test checks nothing"
    )


@pytest.mark.slow
def test_finetune_on_an_alpaca_format_file(alpaca_file, tmp_path):
    result = recipe.finetune(
        tmp_path / "out",
        model="tiny",
        dataset=str(alpaca_file),
        epochs=1,
        batch_size=4,
        device="cpu",
        say=quiet,
    )
    record = json.loads(result["paths"]["config"].read_text())
    assert_equal(
        record["allowed_max_length"],
        512,
        name="allowed_max_length",
        why="exercise 7.3 truncates Alpaca-format entries to 512 tokens",
    )
    assert_equal(record["dataset"], str(alpaca_file), name="dataset recorded")
    assert_equal(len(result["test_data"]), int(36 * 0.10), name="test entries (10 %)")


def test_dataset_alpaca_fetches_the_alpaca_asset(alpaca_file, tmp_path, monkeypatch):
    monkeypatch.setenv("FTKIT_DATA_MIRROR", str(alpaca_file.parent))
    monkeypatch.setenv("FTKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    data = recipe.load_dataset("alpaca", limit=20)
    assert_equal(data, alpaca_entries()[:20], name="entries read via fetch('alpaca-data')")
    assert_equal(
        recipe.default_max_length("alpaca", recipe.get_config("tiny")),
        512,
        name="default allowed_max_length for Alpaca",
        why="exercise 7.3 uses allowed_max_length=512",
    )


def test_an_alpaca_file_with_a_bad_entry_names_it(tmp_path):
    entries = alpaca_entries(12)
    del entries[7]["output"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    with pytest.raises(ValueError, match="entry 7"):
        recipe.load_dataset(str(path))
