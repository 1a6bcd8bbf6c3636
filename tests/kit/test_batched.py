"""Batched KV-cache generation and classification give the book's one-at-a-time results.

The generation checks run a tiny model trained a few steps on the book's instruction
data, so its greedy answers differ from entry to entry and stop at end-of-text at
different points (a random-init model repeats one token and would prove little).
"""

from __future__ import annotations

import json

import pytest
import torch

from ftkit.asserts import assert_equal
from ftkit.data.instruction import load_instruction_data
from ftkit.engine import respond as engine_respond
from ftkit.engine.backend import make_backend
from ftkit.engine.batched import classify_texts, generate_batch
from ftkit.engine.respond import write_test_responses
from ftkit.io.tokenizer import get_tokenizer
from ftkit.presets import get_config
from reference.classifier import add_classification_head, classify_review
from reference.collate import PAD_TOKEN_ID
from reference.generation import generate, text_to_token_ids
from reference.instruction_data import format_input
from reference.model import GPTModel

pytestmark = pytest.mark.usefixtures("one_thread")

WHY = (
    "a KV cache reuses earlier tokens' keys and values and a padding mask hides the other "
    "rows' padding, so each row's greedy tokens are the book's `generate` for it alone (§5.3)"
)
NEW = 24
BOOK = make_backend("cpu", exact=True)  # the book's one-entry `generate` loop (§7.7)


@pytest.fixture(scope="module")
def entries() -> list[dict]:
    return load_instruction_data()[:40]


@pytest.fixture(scope="module")
def trained(entries) -> GPTModel:
    """A tiny model after 60 steps on the first entries (answers vary; some end early)."""
    tokenizer = get_tokenizer()
    torch.manual_seed(123)
    model = GPTModel(get_config("tiny"))
    texts = [
        tokenizer.encode(
            format_input(e) + f"\n\n### Response:\n{e['output']}<|endoftext|>",
            allowed_special={"<|endoftext|>"},
        )[:96]
        for e in entries[8:]
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(60):
        ids = torch.tensor(texts[step % len(texts)])[None]
        loss = torch.nn.functional.cross_entropy(model(ids[:, :-1])[0], ids[0, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def book_answers(model, prompts, new, context, eos_id=PAD_TOKEN_ID) -> list[list[int]]:
    return [
        generate(model, torch.tensor([p]), new, context, eos_id=eos_id)[0].tolist() for p in prompts
    ]


@pytest.fixture(scope="module")
def prompts(entries) -> list[list[int]]:
    tokenizer = get_tokenizer()
    return [text_to_token_ids(format_input(e), tokenizer)[0].tolist() for e in entries[:8]]


def test_batched_generation_gives_the_books_tokens_for_every_row(trained, prompts):
    expected = book_answers(trained, prompts, NEW, 1024)
    generated = [ids[len(p) :] for ids, p in zip(expected, prompts)]
    assert len({tuple(g) for g in generated}) > 2, f"degenerate model: {generated}"
    for batch_size in (3, 8):
        got = []
        for start in range(0, len(prompts), batch_size):
            got += generate_batch(
                trained, prompts[start : start + batch_size], NEW, 1024, PAD_TOKEN_ID
            )
        assert_equal(got, expected, name=f"tokens (batch {batch_size})", why=WHY)


def test_rows_stop_at_end_of_text_independently(trained, prompts):
    expected = book_answers(trained, prompts, 40, 1024)
    lengths = {len(e) - len(p) for e, p in zip(expected, prompts)}
    got = generate_batch(trained, prompts, 40, 1024, PAD_TOKEN_ID)
    assert_equal(got, expected, name="tokens", why=WHY)
    assert len(lengths) > 1 or 40 not in lengths, f"no row ended early: {lengths}"


def test_prompts_outgrowing_the_context_are_cropped_like_the_book(trained, prompts):
    context = max(len(p) for p in prompts) + 4  # the longest rows outgrow it after 4 tokens
    expected = book_answers(trained, prompts, 10, context, eos_id=None)
    got = generate_batch(trained, prompts, 10, context)
    assert_equal(got, expected, name="tokens with cropping", why=WHY)


def test_responses_default_and_exact_are_identical(trained, entries, tmp_path):
    test = entries[:8]
    options = {"max_new_tokens": NEW, "progress": False}
    exact = write_test_responses(
        trained, get_tokenizer(), test, "cpu", tmp_path / "a.json", backend=BOOK, **options
    )
    fast = write_test_responses(
        trained, get_tokenizer(), test, "cpu", tmp_path / "b.json", batch_size=3, **options
    )
    assert_equal(fast, exact, name="responses", why=WHY)
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    assert len({e["model_response"] for e in fast}) > 2, "degenerate responses"


def test_batched_responses_resume_after_an_interrupted_batch(
    trained, entries, tmp_path, monkeypatch
):

    test, path = entries[:5], tmp_path / "r.json"
    options = {"max_new_tokens": 8, "progress": False, "batch_size": 2}
    expected = write_test_responses(
        trained, get_tokenizer(), test, "cpu", tmp_path / "e.json", **options
    )
    real, calls = engine_respond.answer_batch, []

    def crash_on_second(*args, **kwargs):
        calls.append(len(args[2]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_respond, "answer_batch", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        write_test_responses(trained, get_tokenizer(), test, "cpu", path, **options)
    assert len(json.loads(path.read_text())) == 2, "the first batch is saved"
    calls.clear()
    monkeypatch.setattr(engine_respond, "answer_batch", real)
    assert write_test_responses(trained, get_tokenizer(), test, "cpu", path, **options) == expected


@pytest.mark.parametrize("max_length", [None, 40])
def test_batched_classification_gives_classify_reviews_labels(max_length):
    torch.manual_seed(123)
    model = add_classification_head(GPTModel(get_config("tiny")), num_classes=2).eval()
    texts = [f"text number {i} " * (i % 5 + 1) for i in range(20)] + ["WIN cash now!!!"] * 2
    tokenizer = get_tokenizer()
    expected = [classify_review(t, model, tokenizer, "cpu", max_length) for t in texts]
    got = classify_texts(texts, model, tokenizer, "cpu", max_length, batch_size=4)
    assert_equal(got, expected, name="labels")
    assert max_length or len(set(expected)) == 2, f"degenerate classifier: {expected}"
    with pytest.raises(ValueError, match="empty"):
        classify_texts(["ok", "  "], model, tokenizer, "cpu", max_length)
