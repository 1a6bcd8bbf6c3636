"""The checker's small decisions, without a child process: binding calls by the book's names,
changed defaults, log lines judged on numbers, which statements a learner's definitions need."""

from __future__ import annotations

import ast
import re

import pytest

from ftkit.check.binding import binder, collaborator_name, default_difference
from ftkit.check.impl import adapt
from ftkit.check.logs import lines_carrying, style_note
from ftkit.check.statements import Statement, blocked_definitions, risk, run_statements


def book_collate(
    batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None, device="cpu"
):
    """The book's parameter order."""


def reordered(batch, device="cpu", max_len=None, ignore=-100, pad_id=50256):
    return {
        "batch": batch,
        "device": device,
        "max_len": max_len,
        "ignore": ignore,
        "pad_id": pad_id,
    }


KEYWORDS = {"allowed_max_length": "max_len", "ignore_index": "ignore", "pad_token_id": "pad_id"}


def test_a_reordered_signature_with_full_keywords_gets_every_argument_by_name():
    call = adapt(reordered, KEYWORDS, book=book_collate)
    got = call([[1]], 7, -1, 4, device="meta")  # positional, in the book's order
    assert got == {"batch": [[1]], "device": "meta", "max_len": 4, "ignore": -1, "pad_id": 7}


def test_the_books_order_passes_through_unbound():
    assert binder(book_collate, book_collate, {}) is None


def test_a_judge_function_named_otherwise_is_found_under_its_own_name():
    namespace: dict = {}
    source = (
        "def ask_ollama(prompt, model='llama3'):\n    return '0'\n"
        "def generate_model_scores(json_data, json_key, model='llama3'):\n"
        "    return [ask_ollama(str(e), model) for e in json_data]\n"
    )
    exec(source, namespace)  # noqa: S102 - a learner's module
    name = collaborator_name(namespace["generate_model_scores"], "query_model", hints=("ask",))
    assert name == "ask_ollama"


def test_a_changed_default_is_named():
    def book(model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, eos_id=None):
        """The book's generate."""

    def yours(model, idx, max_new_tokens, context_size, temperature=1.0, top_k=None, eos_id=None):
        """A learner's."""

    assert default_difference("generate", yours, book) == (
        "your `generate` defaults to temperature=1.0; the book's to temperature=0.0"
    )
    assert default_difference("generate", book, book) is None


BOOK_LINE = re.compile(r"Ep (\d+) \(Step (\d{6})\): Train loss (\d+\.\d{3}), Val loss (\d+\.\d{3})")


def test_log_lines_are_judged_on_their_numbers_and_wording_is_a_note():
    printed = ["Époque 1 (Étape 00000) : perte 2.153,validation 2.392", "Below is an instruction"]
    found = lines_carrying(printed, [(1, 0, 2.15312, 2.39201)])
    assert found == [printed[0]]
    assert lines_carrying(printed, [(1, 0, 2.16, 2.39201)]) == [None]  # a wrong loss
    note = style_note(found, BOOK_LINE, "Ep 1 (Step 000000): Train loss 2.153, Val loss 2.392")
    assert note and "wording only" in note
    assert (
        style_note(["Ep 1 (Step 000000): Train loss 2.153, Val loss 2.392"], BOOK_LINE, "") is None
    )


def statements(source: str, filename: str = "nb.ipynb (cell 1)") -> list[Statement]:
    lines = source.splitlines()
    return [Statement(s, filename, lines[s.lineno - 1]) for s in ast.parse(source).body]


def test_values_definitions_need_are_computed_and_the_rest_skipped_or_blocked():
    source = "\n".join(
        [
            'PREAMBLE = " ".join(["Below", "is"])',
            "CFG = {'a': 1}",
            "CFG.update({'b': 2})",
            "print('hello')",
            "outputs = model(3)",
            "logits = outputs[0]",
            "def f():\n    return PREAMBLE, CFG['b']",
            "def g(data):\n    return logits, data",
        ]
    )
    namespace: dict = {}
    out = run_statements(statements(source), namespace)
    assert namespace["f"]() == ("Below is", 2)
    assert any("print('hello')" in line and " — " not in line for line in out.skipped)
    blocked = blocked_definitions(out, namespace)
    assert set(blocked) == {"g"}  # `data` is g's parameter, not a module value
    assert blocked["g"].startswith("needs `logits`")


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("urllib.request.urlretrieve(url, path)", "downloads"),
        ("settings, params = download_and_load_gpt2('124M', 'gpt2')", "downloads"),
        ("train_losses = train_model_simple(model, a, b)", "trains"),
        ("loss.backward()", "trains"),
        ("torch.save(model.state_dict(), 'm.pth')", "writes a file"),
    ],
)
def test_downloads_training_and_writes_never_run(source, why):
    assert why in risk(ast.parse(source).body[0])


def test_a_failing_statement_is_listed_not_raised():
    namespace: dict = {}
    out = run_statements(statements("X = 1 / 0\ndef f():\n    return X"), namespace)
    assert "ZeroDivisionError" in out.skipped[0]
    assert "f" in blocked_definitions(out, namespace)
