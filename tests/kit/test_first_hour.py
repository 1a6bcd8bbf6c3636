"""The traps a newcomer meets in the first hour each give one clear line.

A full disk during a checkpoint, a judge that never answers (`--judge-timeout`), a server that
is not Ollama, a port where nothing listens, training offline without GPT-2's weights, and
predicting with a randomly initialised classifier.
"""

from __future__ import annotations

import socket

import pytest
import torch

from ftkit import ollama
from ftkit.check.plugin import _header
from ftkit.cli import build_parser, main
from ftkit.io.files import DiskFullError, atomic_path
from ftkit.recipes.config import InstructConfig
from ftkit.recipes.settings import from_args

TORCH_DISK_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 17536512 vs 17536400"


def test_a_full_disk_during_a_checkpoint_names_the_file_and_the_space(tmp_path, monkeypatch):
    target = tmp_path / "run" / "model-checkpoint.pth"

    def save_until_full(obj, path):
        with open(path, "wb") as f:
            f.write(b"x" * 4096)
        raise RuntimeError(TORCH_DISK_FULL)  # what torch.save says when the disk fills

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(DiskFullError) as caught, atomic_path(target) as tmp:
        torch.save({"w": torch.zeros(3)}, tmp)
    message = str(caught.value)
    assert "no space left" in message and str(target) in message, message
    assert "more than the 4.1 KB written" in message and "free in" in message, message
    assert isinstance(caught.value, RuntimeError)  # the commands print it as one line
    assert not list(target.parent.iterdir()), "a half-written file stayed behind"


def test_other_write_errors_stay_what_they_are(tmp_path):
    with pytest.raises(ValueError, match="not a disk"), atomic_path(tmp_path / "f") as tmp:
        tmp.write_text("x")
        raise ValueError("not a disk problem")


def silent_server() -> tuple[socket.socket, str]:
    """A port that accepts connections and never answers (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    return server, f"http://127.0.0.1:{server.getsockname()[1]}/api/chat"


def test_a_judge_that_never_answers_names_judge_timeout():
    server, url = silent_server()
    with server, pytest.raises(ollama.OllamaError) as caught:
        ollama.chat("q", url=url, timeout=0.3, retries=0)
    assert "no answer within 0.3 s" in str(caught.value) and "--judge-timeout" in str(caught.value)


def test_judge_timeout_is_a_flag_that_reaches_the_judge(monkeypatch):
    args = build_parser().parse_args(["instruct", "judge", "--judge-timeout", "7.5"])
    assert from_args(InstructConfig, args).judge_timeout == 7.5
    seen = []
    monkeypatch.setattr(ollama, "ensure_model_available", lambda *a, **k: None)
    monkeypatch.setattr(ollama, "chat", lambda *a, timeout, **k: seen.append(timeout) or "80")
    entries = [{"instruction": "i", "input": "", "output": "o", "model_response": "r"}]
    assert ollama.score_responses(entries, "model_response", timeout=7.5, progress=False) == [80]
    assert seen == [7.5]


def test_a_judge_timeout_must_be_positive():
    with pytest.raises(ollama.OllamaError, match="positive"):
        ollama.chat("q", timeout=0)


def test_a_server_that_is_not_ollama_is_named_so(httpserver):
    page = "<html><body><h1>404 Not Found</h1>" + "x" * 500 + "</body></html>"
    httpserver.expect_request("/api/chat").respond_with_data(page, 404, content_type="text/html")
    httpserver.expect_request("/api/tags").respond_with_data(page, 404, content_type="text/html")
    with pytest.raises(ollama.OllamaError) as caught:
        ollama.chat("q", url=httpserver.url_for("/api/chat"), retries=0)
    message = str(caught.value)
    assert "not an Ollama server" in message and "text/html" in message, message
    assert "<html" not in message


def test_a_closed_port_is_named_as_one():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ollama.OllamaError) as caught:
        ollama.chat("q", url=f"http://127.0.0.1:{port}/api/chat", retries=0)
    message = str(caught.value)
    assert f"nothing is listening on 127.0.0.1:{port}" in message, message
    assert "11434" in message and f"OLLAMA_HOST=127.0.0.1:{port} ollama serve" in message


def test_training_offline_without_weights_suggests_tiny_before_any_work(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    out = tmp_path / "run"
    models = tmp_path / "no-weights-here"
    code = main(
        [
            "classify",
            "train",
            "--model",
            "gpt2-small",
            "--models-dir",
            str(models),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "--model tiny" in err, err
    assert not out.exists(), "a half-made run folder was left"
    assert "training batches" not in err  # the data was not built first


def test_predict_with_a_random_model_says_so(tmp_path, capsys):
    from ftkit.io.classifier import save_classifier
    from ftkit.presets import get_config
    from ftkit.recipes.classify import predict
    from reference.classifier import add_classification_head
    from reference.model import GPTModel

    torch.manual_seed(0)
    model = add_classification_head(GPTModel(get_config("tiny")), num_classes=2)
    extra = {"settings": {"model": "tiny", "pretrained": False}}
    save_classifier(model, tmp_path, max_length=8, extra=extra)
    warnings = []
    labels = predict(tmp_path, ["win a prize now"], device="cpu", say=warnings.append)
    assert labels[0] in ("spam", "not spam")
    assert len(warnings) == 1 and "randomly initialised" in warnings[0], warnings


def test_the_check_header_says_what_it_checks():
    assert _header("exercises") == "the kit's exercise stubs"
    assert _header("/home/me/mine") == "/home/me/mine"
