"""`ftkit instruct train|respond|judge|all` end to end on the tiny model, judged by a fake Ollama."""

from __future__ import annotations

import io
import json
import socket
from contextlib import redirect_stdout

import pytest

from ftkit.asserts import assert_equal
from ftkit.cli import main
from tests.fake_ollama import running_fake_ollama

QUICK = ["--model", "tiny", "--epochs", "1", "--limit", "10", "--device", "cpu"]
SHORT = ["--max-new-tokens", "16"]  # a random-init model's answers: keep them short


def closed_port_url() -> str:
    """A loopback URL where nothing listens: an Ollama that is not running."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/chat"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """`ftkit instruct all` on tiny, judged by a fake Ollama: (out dir, exit code, stdout, prompts)."""
    out = tmp_path_factory.mktemp("chain")
    printed = io.StringIO()
    with running_fake_ollama(answer="Score: 42") as fake, redirect_stdout(printed):
        code = main(["instruct", "all", *QUICK, *SHORT, "--out", str(out), "--judge-url", fake.url])
        prompts = fake.prompts()
    return out, code, printed.getvalue(), prompts


def test_instruct_all_runs_the_whole_chain(chain):
    out, code, printed, prompts = chain
    assert code == 0, printed
    for name in ("tiny-sft.pth", "tiny-sft.json", "tiny-sft-losses.png", "scores-histogram.png"):
        assert (out / name).is_file(), f"`instruct all` should write {name}"
    responses = json.loads((out / "instruction-data-with-response.json").read_text())
    assert_equal(len(responses), 1, name="test entries for --limit 10 (10 % of 10)")
    assert "model_response" in responses[0], "respond adds each entry's model_response"
    assert_equal(len(prompts), 1, name="judge queries (one per test entry)")
    assert "Number of scores: 1 of 1" in printed and "Average score: 42.00" in printed, printed


def test_rerun_resumes_everything_and_skips_the_judge_without_ollama(chain, capsys):
    out, _, _, _ = chain
    args = ["instruct", "all", *QUICK, *SHORT, "--resume", "--out", str(out)]
    code = main([*args, "--judge-url", closed_port_url()])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "nothing to train" in printed, "a finished run resumed has nothing left to train"
    assert "Skipping the judge step" in printed and "ollama serve" in printed, printed
    assert "Ep 1" not in printed, "no training step may run again"


def test_instruct_judge_alone_fails_clearly_without_ollama(tmp_path, capsys):
    (tmp_path / "instruction-data-with-response.json").write_text("[]")
    code = main(["instruct", "judge", "--out", str(tmp_path), "--judge-url", closed_port_url()])
    err = capsys.readouterr().err
    assert code == 1 and "not reachable" in err, err


def test_instruct_judge_says_when_the_model_is_not_pulled(tmp_path, capsys):
    (tmp_path / "instruction-data-with-response.json").write_text("[]")
    with running_fake_ollama(models=("phi3:latest",)) as fake:
        code = main(["instruct", "judge", "--out", str(tmp_path), "--judge-url", fake.url])
    err = capsys.readouterr().err
    assert code == 1 and "ollama pull llama3" in err, err


def test_respond_before_train_says_what_to_run(tmp_path, capsys):
    code = main(["instruct", "respond", "--model", "tiny", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "ftkit instruct train" in err, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "/no/such/file.json"], "no such file"),
        (["--model", "gpt5"], "unknown model preset"),
        (["--lora-rank", "0"], "lora_rank=0"),
    ],
)
def test_bad_options_are_clear_errors(tmp_path, capsys, args, message):
    code = main(["instruct", "train", *QUICK, "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 1 and message in err, err
