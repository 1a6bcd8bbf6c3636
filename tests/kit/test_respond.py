"""The recipe's respond step (`ftkit/engine/respond.py`): the book's §7.7 loop, resumable and atomic."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ftkit.asserts import assert_equal
from ftkit.engine.backend import make_backend
from ftkit.engine.respond import write_test_responses
from ftkit.io.tokenizer import get_tokenizer
from ftkit.presets import get_config
from reference.generation import generate, text_to_token_ids, token_ids_to_text
from reference.instruction_data import format_input
from reference.model import GPTModel

MAX_NEW = 2
BOOK = make_backend("cpu", exact=True)  # the book's one-entry `generate` loop (§7.7)


@pytest.fixture
def test_entries(golden) -> list[dict]:
    return [
        {k: e[k] for k in ("instruction", "input", "output")}
        for e in golden("evaluation")["first_test_entries"]
    ]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(123)
    return GPTModel(get_config("tiny")).eval()


class Interrupted(Exception):
    """Stands in for Ctrl-C in the middle of a run."""


class CountingModel(nn.Module):
    """Wraps a model, counts forward passes, and can fail on the n-th one."""

    def __init__(self, inner: nn.Module, fail_on: int | None = None):
        super().__init__()
        self.inner, self.fail_on, self.calls = inner, fail_on, 0

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_on:
            raise Interrupted(f"interrupted at forward pass {self.calls}")
        return self.inner(idx)


@pytest.fixture(scope="module")
def expected(golden, tiny_model) -> list[dict]:
    """Each test entry with what greedy generation + the book's slicing give."""
    tokenizer = get_tokenizer()
    out = []
    for book_entry in golden("evaluation")["first_test_entries"]:
        entry = {k: book_entry[k] for k in ("instruction", "input", "output")}
        prompt = format_input(entry)
        ids = generate(tiny_model, text_to_token_ids(prompt, tokenizer), MAX_NEW, 1024)
        text = token_ids_to_text(ids, tokenizer)
        response = text[len(prompt) :].replace("### Response:", "").strip()
        out.append({**entry, "model_response": response})
    return out


def run(model, entries, path, **kwargs):
    return write_test_responses(
        model,
        get_tokenizer(),
        entries,
        "cpu",
        path,
        max_new_tokens=MAX_NEW,
        eos_id=None,
        context_size=1024,
        progress=False,
        **kwargs,
    )


def test_responses_are_greedy_generations_in_the_books_file_format(
    tiny_model, test_entries, expected, tmp_path
):
    path = tmp_path / "instruction-data-with-response.json"
    before = json.dumps(test_entries)
    result = run(tiny_model, test_entries, path)
    assert_equal(result, expected, name="entries", why="each test entry plus its model_response")
    assert_equal(json.loads(path.read_text(encoding="utf-8")), expected, name="file")
    assert_equal(json.dumps(test_entries), before, name="test_data (must not be modified)")


def test_interrupted_run_resumes_without_redoing_entries(
    tiny_model, test_entries, expected, tmp_path
):
    path = tmp_path / "resumed.json"
    crashing = CountingModel(tiny_model, fail_on=MAX_NEW + 1)  # first pass of entry 2
    with pytest.raises(Interrupted):
        run(crashing, test_entries, path, backend=BOOK)  # the book's loop: one entry at a time
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert_equal(len(saved), 1, name="entries saved before the interruption")

    counting = CountingModel(tiny_model)
    run(counting, test_entries, path, backend=BOOK)
    assert_equal(
        counting.calls, 2 * MAX_NEW, name="forward passes of the rerun (entries 2 and 3 only)"
    )
    assert_equal(json.loads(path.read_text(encoding="utf-8")), expected, name="resumed file")


def test_responses_file_of_another_test_set_is_an_error(tiny_model, test_entries, tmp_path):
    path = tmp_path / "responses.json"
    other = [dict(test_entries[0], instruction="Name a primary color.", model_response="Red.")]
    path.write_text(json.dumps(other), encoding="utf-8")
    with pytest.raises(ValueError, match=r"entry 0"):
        run(tiny_model, test_entries, path)
    assert_equal(json.loads(path.read_text(encoding="utf-8")), other, name="file (left alone)")


def test_model_mode_is_restored(tiny_model, test_entries, tmp_path):
    tiny_model.train()
    try:
        run(tiny_model, test_entries[:1], tmp_path / "r.json")
        assert tiny_model.training, "write_test_responses must give the model back in train mode"
    finally:
        tiny_model.eval()
