"""The LLM judge (book §7.8) against a fake Ollama speaking the real wire format.

Scoring runs on the book's real responses file (110 test entries answered by the
fine-tuned GPT-2 355M); the fake judge answers a deterministic function of each
response, so the expected scores are known without an 8B model.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import time
from collections import Counter

import pytest

import reference.judge as judge_tooling
from ftkit.asserts import assert_equal
from ftkit.io.assets import fetch
from tests.fake_ollama import running_fake_ollama

pytestmark = pytest.mark.stage("evaluation")

RESPONSE = re.compile(r"score the model response `(.*)` on a scale from 0 to 100", re.S)
# Answer styles real judges use: bare, prefixed, after DeepSeek-R1's reasoning, as a fraction.
STYLES = (
    "{}",
    "Score: {}",
    "<think>\nClose, but 90 would be too generous.\n</think>\n\n{}",
    "{}/100",
)
WHY_ORDER = "generate_model_scores returns one score per entry, in entry order (book §7.8)"


def fake_score(response: str) -> int:
    """The fake judge's score of a response: a fixed function, 0..100."""
    return int(hashlib.sha256(response.encode("utf-8")).hexdigest(), 16) % 101


def fake_judge(prompt: str) -> str:
    score = fake_score(RESPONSE.search(prompt).group(1))
    return STYLES[score % len(STYLES)].format(score)


@pytest.fixture(scope="module")
def responses() -> list[dict]:
    return json.loads(fetch("instruction-data-with-response").read_text(encoding="utf-8"))


@pytest.fixture
def fake():
    with running_fake_ollama(answer=fake_judge) as server:
        yield server


def free_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/chat"


def read_records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- the book's data ------------------------------------------------------------------


def test_responses_file_is_the_books(responses, golden):
    g = golden("evaluation")
    assert_equal(len(responses), g["test_set_length"], name="entries", why="the 10% test split")
    for i, expected in enumerate(g["first_test_entries"]):
        assert_equal(responses[i], expected, name=f"entry {i}", why="printed in book §7.7")


@pytest.mark.exercise("judge_prompt")
def test_judge_prompt_is_the_books(impl, ref, golden, responses):
    entry = responses[0]
    expected = golden("evaluation")["judge_prompt_template"].format(
        input=ref.format_input(entry), output=entry["output"], response=entry["model_response"]
    )
    assert_equal(impl.judge_prompt(entry, "model_response"), expected, name="prompt")


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
    assert_equal(
        sent["options"],
        golden("evaluation")["judge_options"],
        name="options",
        why="seed and temperature 0 make the judge deterministic; num_ctx fits the prompt (§7.8)",
    )


@pytest.mark.parametrize("fault", ["500", "drop", "error-line", "no-done", "garbled", "slow"])
def test_query_model_retries_a_transient_failure(fault):
    with running_fake_ollama(answer="Score: 85 out of 100", slow_s=0.6) as fake:
        fake.faults = [fault]
        text = judge_tooling.query_model("q", url=fake.url, timeout=0.3, backoff=0.01)
    assert_equal(text, "Score: 85 out of 100", name=f"answer after a {fault!r} failure")
    assert_equal(len(fake.requests), 2, name="requests (one failed, one retried)")


def test_query_model_gives_up_after_retries_saying_what_failed():
    with running_fake_ollama() as fake:
        fake.fault_for = lambda prompt: "500"
        with pytest.raises(judge_tooling.OllamaError, match=r"failed 3 times.*HTTP 500"):
            judge_tooling.query_model("q", url=fake.url, retries=2, backoff=0.01)
    assert_equal(len(fake.requests), 3, name="requests (1 + 2 retries)")


def test_query_model_does_not_retry_a_request_error():
    with running_fake_ollama() as fake:
        fake.faults = ["400"]
        with pytest.raises(judge_tooling.OllamaError, match="HTTP 400"):
            judge_tooling.query_model("q", url=fake.url, backoff=0.01)
    assert_equal(len(fake.requests), 1, name="requests")


def test_query_model_not_reachable_says_how_to_start_ollama():
    started = time.monotonic()
    with pytest.raises(judge_tooling.OllamaError) as err:
        judge_tooling.query_model("q", url=free_port_url(), backoff=5.0)
    message = str(err.value)
    assert "not reachable" in message and "ollama serve" in message, message
    assert "ollama pull llama3" in message, message
    assert time.monotonic() - started < 3, "a refused connection must fail fast, not back off"


def test_query_model_model_not_pulled_lists_models_and_says_pull():
    with (
        running_fake_ollama(models=("mistral:latest",)) as fake,
        pytest.raises(judge_tooling.OllamaError) as err,
    ):
        judge_tooling.query_model("q", model="llama3", url=fake.url, backoff=0.01)
    message = str(err.value)
    assert "ollama pull llama3" in message and "mistral:latest" in message, message
    assert_equal(len(fake.requests), 1, name="requests (a missing model is not retried)")


def test_model_name_without_tag_means_latest():
    with running_fake_ollama(models=("llama3:latest", "qwen3:8b")) as fake:
        judge_tooling.ensure_model_available("llama3", fake.url)
        judge_tooling.ensure_model_available("qwen3:8b", fake.url)
        with pytest.raises(judge_tooling.OllamaError, match="ollama pull qwen3"):
            judge_tooling.ensure_model_available("qwen3", fake.url)


def test_fake_speaks_non_streaming_chat_too():
    import requests

    with running_fake_ollama(answer="42") as fake:
        body = requests.post(
            fake.url,
            json={
                "model": "llama3",
                "messages": [{"role": "user", "content": "q"}],
                "stream": False,
            },
            timeout=5,
        ).json()
    assert body["done"] is True and body["message"] == {"role": "assistant", "content": "42"}


# --- parse_score ----------------------------------------------------------------------


@pytest.mark.exercise("parse_score")
@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("85", 85),
        ("  85\n", 85),
        ("0", 0),
        ("100", 100),
        ("Score: 85", 85),
        ("**Score:** 92", 92),
        ("**85**", 85),
        ("The score is 77.", 77),
        ("85/100", 85),
        ("8/10", 80),
        ("Rating: 7/10", 70),
        ("I'd rate this response 60 out of 100.", 60),
        ("85.6", 86),
        ("On a scale from 0 to 100, I would give it 75.", 75),
        ("<think>The answer is close; maybe 70, maybe 90.</think>\n\n85", 85),
        ("<think>\nreasoning 12 steps\n</think>Score: 40", 40),
        ("150", None),
        ("-5", None),
        ("I cannot score this response.", None),
        ("", None),
        ("<think>never finished, 40", None),
    ],
)
def test_parse_score(impl, text, score):
    assert_equal(impl.parse_score(text), score, name=f"parse_score({text!r})")


# --- generate_model_scores ------------------------------------------------------------


@pytest.mark.exercise("generate_model_scores")
@pytest.mark.beyond_book
def test_scores_the_books_110_responses_in_order(impl, responses, fake):
    scores = impl.generate_model_scores(responses, "model_response", url=fake.url, progress=False)
    expected = [fake_score(e["model_response"]) for e in responses]
    assert_equal(scores, expected, name="scores", why=WHY_ORDER)
    assert_equal(len(fake.served), 110, name="prompts answered")


@pytest.mark.exercise("generate_model_scores")
@pytest.mark.beyond_book
def test_empty_response_scores_0_without_asking(impl, responses, fake):
    data = [dict(e) for e in responses[:4]]
    data[2]["model_response"] = ""
    scores = impl.generate_model_scores(data, "model_response", url=fake.url, progress=False)
    expected = [fake_score(e["model_response"]) for e in data]
    expected[2] = 0
    assert_equal(scores, expected, name="scores", why="an empty response is worth 0 points")
    assert_equal(len(fake.served), 3, name="prompts sent (the empty one is not)")


@pytest.mark.exercise("generate_model_scores")
@pytest.mark.beyond_book
def test_unparsable_answer_is_reported_and_left_out(impl, responses, tmp_path, capsys):
    data = responses[:6]
    refused = data[4]["model_response"]

    def judge(prompt):
        return "I refuse to grade this." if refused in prompt else fake_judge(prompt)

    path = tmp_path / "scores.jsonl"
    with running_fake_ollama(answer=judge) as fake:
        scores = impl.generate_model_scores(
            data, "model_response", url=fake.url, scores_path=path, progress=False
        )
    expected = [fake_score(e["model_response"]) for i, e in enumerate(data) if i != 4]
    assert_equal(scores, expected, name="scores", why="the book skips answers it cannot convert")
    records = read_records(path)
    assert_equal(records[4]["score"], None, name="record 4 score")
    assert_equal(records[4]["raw"], "I refuse to grade this.", name="record 4 raw answer")
    captured = capsys.readouterr()
    assert "I refuse to grade this." in captured.out + captured.err


@pytest.mark.exercise("generate_model_scores")
@pytest.mark.beyond_book
def test_crash_mid_run_then_resume_loses_and_repeats_nothing(impl, responses, tmp_path):
    k = 40
    crash_on = responses[k]["model_response"]
    path = tmp_path / "scores.jsonl"
    with running_fake_ollama(answer=fake_judge) as fake:
        fake.fault_for = lambda p: "400" if RESPONSE.search(p).group(1) == crash_on else None
        try:
            impl.generate_model_scores(
                responses, "model_response", url=fake.url, scores_path=path, progress=False
            )
        except (NotImplementedError, TypeError):
            raise  # not started, or a signature problem: not the crash this test stages
        except Exception:  # any crash will do: what matters is what the file kept
            pass
        else:
            pytest.fail(f"the fake judge's HTTP 400 on entry {k} should have stopped the run")
        assert_equal([r["index"] for r in read_records(path)], list(range(k)), name="saved")
        # A crash in the middle of writing leaves half a line behind.
        with path.open("a", encoding="utf-8") as f:
            f.write('{"index": 40, "id": "3f2')
        fake.fault_for = None
        scores = impl.generate_model_scores(
            responses, "model_response", url=fake.url, scores_path=path, progress=False
        )
        assert_equal(scores, [fake_score(e["model_response"]) for e in responses], name="scores")
        indices = [r["index"] for r in read_records(path)]
        assert_equal(indices, list(range(110)), name="indices in the scores file")
        served = Counter(fake.served)
        assert_equal(sorted(set(served.values())), [1], name="times each prompt was answered")
        assert_equal(len(served), 110, name="distinct prompts answered")
        before = len(fake.requests)
        again = impl.generate_model_scores(
            responses, "model_response", url=fake.url, scores_path=path, progress=False
        )
        assert_equal(again, scores, name="scores of a finished rerun")
        assert_equal(len(fake.requests), before, name="requests of a finished rerun")


@pytest.mark.exercise("generate_model_scores")
@pytest.mark.beyond_book
def test_scores_file_of_other_data_is_an_error(impl, responses, tmp_path, fake):
    path = tmp_path / "scores.jsonl"
    data = [dict(e) for e in responses[:5]]
    impl.generate_model_scores(
        data, "model_response", url=fake.url, scores_path=path, progress=False
    )
    data[3]["model_response"] = "A different model's answer."
    with pytest.raises(ValueError, match=r"entry 3"):
        impl.generate_model_scores(
            data, "model_response", url=fake.url, scores_path=path, progress=False
        )


def test_scores_file_of_another_judge_is_an_error(responses, tmp_path):
    path = tmp_path / "scores.jsonl"
    with running_fake_ollama(answer=fake_judge, models=("llama3:latest", "qwen3:8b")) as fake:
        judge_tooling.generate_model_scores(
            responses[:3], "model_response", url=fake.url, scores_path=path, progress=False
        )
        with pytest.raises(ValueError, match="judge"):
            judge_tooling.generate_model_scores(
                responses[:3], "model_response", "qwen3:8b", fake.url, scores_path=path
            )


def test_missing_key_names_the_entry(responses, fake):
    data = [dict(e) for e in responses[:3]]
    del data[1]["model_response"]
    with pytest.raises(KeyError, match=r"entry 1 .*'model_response'"):
        judge_tooling.generate_model_scores(data, "model_response", url=fake.url, progress=False)


def test_unpulled_judge_fails_before_scoring(responses):
    with (
        running_fake_ollama(models=("mistral:latest",)) as fake,
        pytest.raises(judge_tooling.OllamaError, match="ollama pull llama3"),
    ):
        judge_tooling.generate_model_scores(
            responses, "model_response", url=fake.url, progress=False
        )
    assert_equal(fake.requests, [], name="chat requests")


# --- summary and plot -----------------------------------------------------------------


def test_summary_prints_the_books_lines(capsys):
    text = judge_tooling.summarize_scores([50, 60, 71], total=4)
    assert_equal(text, "Number of scores: 3 of 4\nAverage score: 60.33", name="summary")
    assert "Average score: 60.33" in capsys.readouterr().out


def test_histogram_is_a_png(tmp_path):
    path = judge_tooling.plot_score_histogram([0, 10, 55, 55, 100], tmp_path / "scores.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.png"], "no temp file left behind"
