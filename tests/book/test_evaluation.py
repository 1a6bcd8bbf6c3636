"""Test-set responses (book §7.7): extracting the answer, and the book's response loop.

The kit's resumable run that writes the responses file is tested in tests/kit/test_respond.py.
"""

from __future__ import annotations

import pytest
import torch

from ftkit.asserts import assert_equal
from ftkit.io.tokenizer import get_tokenizer
from ftkit.presets import get_config

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
    return ref.GPTModel(get_config("tiny")).eval()


@pytest.fixture(scope="module")
def expected(ref, golden, tiny_model) -> list[dict]:
    """Each test entry with what greedy generation + the book's slicing give (reference helpers)."""
    tokenizer = get_tokenizer()
    out = []
    for book_entry in golden("evaluation")["first_test_entries"]:
        entry = {k: book_entry[k] for k in ("instruction", "input", "output")}
        prompt = ref.format_input(entry)
        idx = ref.text_to_token_ids(prompt, tokenizer)
        ids = ref.generate(tiny_model, idx, MAX_NEW, 1024, eos_id=50256)
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
        impl.extract_response(generated, input_text=prompt),
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
        impl.extract_response(generated, input_text=prompt, style="phi3"),
        entry["model_response"],
        name="response",
        why="exercise 7.1's Phi-3 prompt: the answer follows the '<|assistant|>:' tag",
    )


@pytest.mark.exercise("extract_response")
@pytest.mark.beyond_book
def test_extract_response_rejects_text_without_the_prompt(impl):
    with pytest.raises(ValueError, match="does not start with the prompt"):
        impl.extract_response("The car is as fast as a bullet.", input_text="### Instruction:")


# --- generate_test_responses ----------------------------------------------------------


@pytest.mark.exercise("generate_test_responses")
def test_responses_are_the_books_greedy_generations(impl, tiny_model, test_entries, expected):
    answered = impl.generate_test_responses(
        tiny_model,
        tokenizer=get_tokenizer(),
        test_data=test_entries,
        device="cpu",
        max_new_tokens=MAX_NEW,
    )
    assert_equal(
        answered,
        expected,
        name="entries",
        why="each test entry gets its model_response: greedy, up to max_new_tokens, stopping at "
        "end-of-text, the prompt and '### Response:' removed (book §7.7)",
    )
    assert_equal(
        test_entries, expected, name="test_data", why="the book adds model_response in place"
    )


class EndsAfterOneWord(torch.nn.Module):
    """A fake GPT whose greedy continuation is one word, then end-of-text, then the word again."""

    def __init__(self, word_id: int):
        super().__init__()
        self.word_id = word_id
        self.pos_emb = torch.nn.Embedding(1024, 1)  # the book reads the context size here

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*idx.shape, 50257)
        after_word = idx == self.word_id
        logits[..., self.word_id] = (~after_word).float()
        logits[..., 50256] = after_word.float()
        return logits


@pytest.mark.exercise("generate_test_responses")
def test_responses_stop_at_end_of_text(impl, test_entries):
    tokenizer = get_tokenizer()
    word = tokenizer.encode(" Paris")[0]
    answered = impl.generate_test_responses(
        EndsAfterOneWord(word), tokenizer, test_entries[:1], "cpu", 6
    )
    assert_equal(
        answered[0]["model_response"],
        "Paris",
        name="model_response",
        why="the book's loop stops at the end-of-text token: generate(..., eos_id=50256) (§7.7)",
    )


@pytest.mark.exercise("generate_test_responses")
@pytest.mark.parametrize("training", [True, False])
def test_responses_leave_the_models_mode_as_it_was(impl, test_entries, training):
    tokenizer = get_tokenizer()
    model = EndsAfterOneWord(tokenizer.encode(" Paris")[0]).train(training)
    impl.generate_test_responses(
        model, tokenizer=tokenizer, test_data=test_entries[:1], device="cpu", max_new_tokens=2
    )
    assert model.training == training, (
        f"generate_test_responses switched the model to {'eval' if training else 'train'} mode: "
        "the book's §7.7 loop only generates, the caller chose the mode (model.eval() before it)"
    )
