"""The LLM judge (book §7.8): the book's `query_model` and `generate_model_scores`.

`query_model` talks to a fake Ollama on loopback that speaks the real wire format;
`generate_model_scores` is run with a fake `query_model` in its module, so no 8B
model is needed. The kit's judge client (retries, resumable scores file, the score
parser) is tested in tests/kit/test_ollama.py.
"""

from __future__ import annotations

import json

import pytest
from fake_ollama import running_fake_ollama

from ftkit.asserts import assert_equal
from ftkit.check.binding import substitute
from ftkit.io.assets import fetch

pytestmark = pytest.mark.stage("evaluation")


@pytest.fixture(scope="module")
def responses() -> list[dict]:
    return json.loads(fetch("instruction-data-with-response").read_text(encoding="utf-8"))


@pytest.fixture
def fake_query(impl, monkeypatch):
    """Replace `query_model` where the implementation's `generate_model_scores` looks it up
    (under the name it uses, e.g. a learner's `ask_ollama`: `ftkit.check.binding.substitute`).

    The fake records `(prompt, model)` of each call and answers `answers[i]` in turn.
    """
    calls: list[tuple[str, str]] = []
    answers: list[str] = []

    def query_model(prompt, model="llama3", *args, **kwargs):
        calls.append((prompt, model))
        return answers[len(calls) - 1]

    substitute(
        monkeypatch,
        impl.generate_model_scores,
        "query_model",
        query_model,
        hints=("query", "ollama", "judge", "ask", "chat", "llm"),
    )
    return calls, answers


# --- the book's data ------------------------------------------------------------------


def test_responses_file_is_the_books(responses, golden):
    g = golden("evaluation")
    assert_equal(len(responses), g["test_set_length"], name="entries", why="the 10% test split")
    for i, expected in enumerate(g["first_test_entries"]):
        assert_equal(responses[i], expected, name=f"entry {i}", why="printed in book §7.7")


# --- query_model ----------------------------------------------------------------------


@pytest.mark.exercise("query_model")
def test_query_model_joins_the_stream_and_sends_the_books_options(impl, golden):
    answer = "Llamas are herbivores: grasses, hay and other plants."
    with running_fake_ollama(answer=answer, chunk_size=2) as fake:
        text = impl.query_model("What do Llamas eat?", url=fake.url)
    assert_equal(text, answer, name="answer", why="the streamed message pieces joined in order")
    (sent,) = fake.requests
    assert_equal(sent["model"], golden("evaluation")["judge_model"], name="model")
    assert_equal(
        sent["messages"], [{"role": "user", "content": "What do Llamas eat?"}], name="messages"
    )
    options = golden("evaluation")["judge_options"]
    top = sorted(set(options) & set(sent))
    assert "options" in sent, (
        f"the request has no 'options'{f' ({top} sent at the top level)' if top else ''}: the "
        f"book sends them as data['options'] = {options}, which Ollama reads (§7.8); sent "
        f"keys {sorted(sent)}"
    )
    assert_equal(
        sent["options"],
        options,
        name="options",
        why="seed and temperature 0 make the judge deterministic; num_ctx fits the prompt (§7.8)",
    )


@pytest.mark.exercise("query_model")
def test_query_model_asks_the_model_given(impl):
    with running_fake_ollama(answer="42", models=("qwen3:8b",)) as fake:
        assert_equal(impl.query_model("q", model="qwen3:8b", url=fake.url), "42", name="answer")
    assert_equal(fake.requests[0]["model"], "qwen3:8b", name="model sent")


# --- generate_model_scores ------------------------------------------------------------


@pytest.mark.exercise("generate_model_scores")
def test_scores_use_the_books_prompt_in_entry_order(impl, ref, golden, responses, fake_query):
    calls, answers = fake_query
    answers += ["85", "40", "100"]
    scores = impl.generate_model_scores(responses[:3], json_key="model_response")
    assert_equal(scores, [85, 40, 100], name="scores", why="one int per entry, in order (§7.8)")
    template = golden("evaluation")["judge_prompt_template"]
    for (prompt, model), entry in zip(calls, responses[:3]):
        expected = template.format(
            input=ref.format_input(entry), output=entry["output"], response=entry["model_response"]
        )
        assert_equal(
            prompt,
            expected,
            name="prompt",
            why="the book's scoring prompt with format_input(entry), entry['output'] and "
            "entry[json_key] as the response (§7.8)",
        )
        assert_equal(model, "llama3", name="model", why="the book's judge is llama3")


@pytest.mark.exercise("generate_model_scores")
def test_json_key_and_model_are_used(impl, responses, fake_query):
    calls, answers = fake_query
    answers += ["7"]
    entry = dict(responses[0], other_response="A different answer.")
    assert_equal(
        impl.generate_model_scores([entry], json_key="other_response", model="phi3"),
        [7],
        name="scores",
    )
    ((prompt, model),) = calls
    assert "`A different answer.`" in prompt, "the response scored is entry[json_key]"
    assert_equal(model, "phi3", name="model", why="generate_model_scores passes model on")


@pytest.mark.exercise("generate_model_scores")
def test_an_answer_that_is_no_integer_is_reported_and_skipped(impl, responses, fake_query, capsys):
    _, answers = fake_query
    answers += ["60", "I refuse to grade this.", "75"]
    scores = impl.generate_model_scores(responses[:3], json_key="model_response")
    assert_equal(scores, [60, 75], name="scores", why="the book skips answers int() cannot read")
    captured = capsys.readouterr()
    assert "Could not convert score: I refuse to grade this." in captured.out, captured.out


@pytest.mark.exercise("generate_model_scores")
def test_answers_are_read_as_the_book_reads_them_with_int(impl, responses, fake_query, capsys):
    _, answers = fake_query
    answers += ["150", "Score: 85 out of 100", "-5"]
    scores = impl.generate_model_scores(responses[:3], json_key="model_response")
    capsys.readouterr()
    if scores[:1] == [100] or 0 in scores:
        raise AssertionError(
            f"scores {scores}: an out-of-range answer is clamped to 0-100; the book keeps "
            "int(score) as the judge wrote it (150 stays 150)"
        )
    if 85 in scores:
        raise AssertionError(
            f"scores {scores}: a number was picked out of 'Score: 85 out of 100'; the book's "
            "int(score) cannot read that answer, so it is reported and skipped"
        )
    assert_equal(scores, [150, -5], name="scores", why="the book keeps what int() reads (§7.8)")
