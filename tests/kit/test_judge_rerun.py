"""The judge step tells the truth: answers with no number are asked again on rerun; bad URLs are named."""

from __future__ import annotations

import json

from ftkit import ollama
from ftkit.cli import main
from tests.fake_ollama import running_fake_ollama

ENTRIES = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue.", "model_response": "Red."},
    {"instruction": "Add 2 and 2.", "input": "", "output": "4", "model_response": "4"},
]


def judged_folder(tmp_path):
    (tmp_path / "instruction-data-with-response.json").write_text(json.dumps(ENTRIES))
    return tmp_path


def latest_scores(folder) -> dict[int, int | None]:
    scores = {}
    for line in (folder / "scores.jsonl").read_text().splitlines():
        record = json.loads(line)
        scores[record["index"]] = record["score"]
    return scores


def test_an_answer_without_a_number_is_recorded_and_asked_again_on_rerun(tmp_path, capsys):
    out = judged_folder(tmp_path)
    args = ["instruct", "judge", "--out", str(out), "--no-progress"]
    with running_fake_ollama(answer="no idea") as fake:
        assert main([*args, "--judge-url", fake.url]) == 0
    captured = capsys.readouterr()
    assert "Number of scores: 0 of 2" in captured.out
    assert "asked again" in captured.err, captured.err
    assert latest_scores(out) == {0: None, 1: None}, "recorded as having no usable score"

    with running_fake_ollama(answer="Score: 80") as fake:
        assert main([*args, "--judge-url", fake.url]) == 0
        asked = len(fake.prompts())
    assert asked == 2, "both entries without a usable score are asked again"
    assert latest_scores(out) == {0: 80, 1: 80}
    assert "Number of scores: 2 of 2" in capsys.readouterr().out

    with running_fake_ollama(answer="Score: 10") as fake:
        assert main([*args, "--judge-url", fake.url]) == 0
        assert fake.prompts() == [], "entries with a score are never asked again"


def test_a_malformed_judge_url_is_named_as_malformed(tmp_path, capsys):
    out = judged_folder(tmp_path)
    code = main(["instruct", "judge", "--out", str(out), "--judge-url", "not-a-url"])
    err = capsys.readouterr().err
    assert code == 1 and "'not-a-url' (--judge-url) is malformed" in err, err
    assert "not reachable" not in err


def test_the_not_reachable_hint_names_serve_and_pull(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    problem = None
    try:
        ollama.list_models(f"http://127.0.0.1:{port}/api/chat", timeout=2, model="phi3")
    except ollama.OllamaError as err:
        problem = str(err)
    assert problem and "ollama serve" in problem and "ollama pull phi3" in problem, problem
