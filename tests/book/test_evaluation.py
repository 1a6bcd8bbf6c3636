"""Test-set responses (book §7.7): extracting the answer, and a resumable generation run."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import reference.evaluation as evaluation_tooling
from ftkit.asserts import assert_equal
from ftkit.io.tokenizer import get_tokenizer

pytestmark = pytest.mark.stage("evaluation")

MAX_NEW = 2
WHY_EXTRACT = (
    "the response is the generated text after the prompt, without the '### Response:' header, "
    "stripped (book §7.7)"
)


@pytest.fixture
def book_entries(golden) -> list[dict]:
    return golden("evaluation")["first_test_entries"]


@pytest.fixture
def test_entries(book_entries) -> list[dict]:
    return [{k: e[k] for k in ("instruction", "input", "output")} for e in book_entries]


@pytest.fixture(scope="module")
def tiny_model(ref):
    torch.manual_seed(123)
    return ref.GPTModel(ref.get_config("tiny")).eval()


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
def expected(ref, golden, tiny_model) -> list[dict]:
    """Each test entry with what greedy generation + the book's slicing give (reference helpers)."""
    tokenizer = get_tokenizer()
    out = []
    for book_entry in golden("evaluation")["first_test_entries"]:
        entry = {k: book_entry[k] for k in ("instruction", "input", "output")}
        prompt = ref.format_input(entry)
        ids = ref.generate(tiny_model, ref.text_to_token_ids(prompt, tokenizer), MAX_NEW, 1024)
        text = ref.token_ids_to_text(ids, tokenizer)
        response = text[len(prompt) :].replace("### Response:", "").strip()
        out.append({**entry, "model_response": response})
    return out


# --- extract_response -----------------------------------------------------------------


@pytest.mark.exercise("extract_response")
def test_extract_response_on_the_books_first_test_entry(impl, ref, book_entries):
    entry = book_entries[0]
    prompt = ref.format_input(entry)
    generated = f"{prompt}\n\n### Response:\n{entry['model_response']}  \n"
    assert_equal(
        impl.extract_response(generated, prompt),
        "The car is as fast as a bullet.",
        name="response",
        why=WHY_EXTRACT,
    )


@pytest.mark.exercise("extract_response")
@pytest.mark.book_exercise("7.1")
def test_extract_response_phi3_style(impl, ref, book_entries):
    entry = book_entries[1]
    prompt = ref.format_input(entry, style="phi3")
    generated = f"{prompt}\n<|assistant|>:\n{entry['model_response']}"
    assert_equal(
        impl.extract_response(generated, prompt, style="phi3"),
        entry["model_response"],
        name="response",
        why="exercise 7.1's Phi-3 prompt: the answer follows the '<|assistant|>:' tag",
    )


def test_extract_response_rejects_text_without_the_prompt(book_entries):
    with pytest.raises(ValueError, match="does not start with the prompt"):
        evaluation_tooling.extract_response("The car is as fast as a bullet.", "### Instruction:")


# --- generate_test_responses ----------------------------------------------------------


def run(impl, model, entries, path, **kwargs):
    return impl.generate_test_responses(
        model,
        get_tokenizer(),
        entries,
        "cpu",
        out_path=path,
        max_new_tokens=MAX_NEW,
        eos_id=None,
        context_size=1024,
        progress=False,
        **kwargs,
    )


@pytest.mark.exercise("generate_test_responses")
def test_responses_are_greedy_generations_in_the_books_file_format(
    impl, tiny_model, test_entries, expected, tmp_path
):
    path = tmp_path / "instruction-data-with-response.json"
    before = json.dumps(test_entries)
    result = run(impl, tiny_model, test_entries, path)
    assert_equal(result, expected, name="entries", why="each test entry plus its model_response")
    assert_equal(json.loads(path.read_text(encoding="utf-8")), expected, name="file")
    assert_equal(json.dumps(test_entries), before, name="test_data (must not be modified)")


@pytest.mark.exercise("generate_test_responses")
def test_interrupted_run_resumes_without_redoing_entries(
    impl, tiny_model, test_entries, expected, tmp_path
):
    path = tmp_path / "resumed.json"
    crashing = CountingModel(tiny_model, fail_on=MAX_NEW + 1)  # first pass of entry 2
    with pytest.raises(Interrupted):
        run(impl, crashing, test_entries, path)
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert_equal(len(saved), 1, name="entries saved before the interruption")

    counting = CountingModel(tiny_model)
    run(impl, counting, test_entries, path)
    assert_equal(
        counting.calls, 2 * MAX_NEW, name="forward passes of the rerun (entries 2 and 3 only)"
    )
    assert_equal(json.loads(path.read_text(encoding="utf-8")), expected, name="resumed file")


@pytest.mark.exercise("generate_test_responses")
def test_responses_file_of_another_test_set_is_an_error(impl, tiny_model, test_entries, tmp_path):
    path = tmp_path / "responses.json"
    other = [dict(test_entries[0], instruction="Name a primary color.", model_response="Red.")]
    path.write_text(json.dumps(other), encoding="utf-8")
    with pytest.raises(ValueError, match=r"entry 0"):
        run(impl, tiny_model, test_entries, path)
    assert_equal(json.loads(path.read_text(encoding="utf-8")), other, name="file (left alone)")


def test_model_mode_is_restored(tiny_model, test_entries, tmp_path):
    tiny_model.train()
    try:
        run(evaluation_tooling, tiny_model, test_entries[:1], tmp_path / "r.json")
        assert tiny_model.training, "generate_test_responses must give the model back in train mode"
    finally:
        tiny_model.eval()
