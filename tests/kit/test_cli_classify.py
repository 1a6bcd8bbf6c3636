"""`ftkit classify train|predict` on the real SMS spam data (a few texts, the tiny model): files, resume, errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from ftkit.cli import main
from ftkit.io.tokenizer import get_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


PNG = b"\x89PNG\r\n\x1a\n"


def train(out, *extra: str) -> int:
    args = ["classify", "train", "--model", "tiny", "--limit", "8", "--device", "cpu"]
    return main([*args, "--out", str(out), "--no-progress", *extra])


def test_train_writes_model_plots_and_book_lines_then_predict_labels(tmp_path, capsys):
    out = tmp_path / "clf"
    assert train(out, "--epochs", "1") == 0
    text = capsys.readouterr().out
    for expected in (
        "1 training batches",  # --limit 8 texts, batch 8
        "NOT GPT-2",  # the tiny model says it is random-init
        "Ep 1 (Step 000000): Train loss",
        "Training accuracy:",
        "Test accuracy:",
    ):
        assert expected in text, f"{expected!r} missing from the output:\n{text}"
    for plot in ("loss-plot.png", "accuracy-plot.png"):
        assert (out / plot).read_bytes()[:8] == PNG, f"{plot} is not a PNG"
    meta = json.loads((out / "review_classifier.json").read_text())
    assert meta["num_classes"] == 2 and meta["model_config"]["emb_dim"] == 64
    texts = pd.read_csv(out / "data" / "train.csv")["Text"]
    longest = max(len(get_tokenizer().encode(t)) for t in texts)
    assert meta["max_length"] == longest, "texts are padded to the longest training text (§6.3)"
    state = torch.load(out / "review_classifier.pth", weights_only=True)
    assert list(state["out_head.weight"].shape) == [2, 64], "the saved model has the 2-class head"

    assert main(["classify", "predict", "--model-dir", str(out), "Win cash now!", "hi mum"]) == 0
    labels = capsys.readouterr().out.split("\n")[:2]
    assert all(label in ("spam", "not spam") for label in labels), labels


def test_resumed_training_matches_an_uninterrupted_run(tmp_path, capsys):
    assert train(tmp_path / "straight", "--epochs", "2") == 0
    assert train(tmp_path / "split", "--epochs", "1") == 0
    assert train(tmp_path / "split", "--epochs", "2", "--resume") == 0
    assert "Resuming from" in capsys.readouterr().out
    straight = json.loads((tmp_path / "straight" / "history.json").read_text())
    split = json.loads((tmp_path / "split" / "history.json").read_text())
    assert split["history"] == straight["history"], "resuming must lose nothing"
    assert split["accuracy"] == straight["accuracy"]


def test_resume_refuses_other_settings(tmp_path, capsys):
    assert train(tmp_path, "--epochs", "1") == 0
    assert train(tmp_path, "--epochs", "2", "--resume", "--trainable", "all") == 1
    assert "other settings" in capsys.readouterr().err


def test_too_few_texts_for_a_batch_is_a_clear_error(tmp_path, capsys):
    code = main(
        ["classify", "train", "--model", "tiny", "--limit", "4", "--out", str(tmp_path)]
        + ["--device", "cpu", "--no-progress"]
    )
    assert code == 1
    assert "raise --limit" in capsys.readouterr().err


def test_predict_without_a_model_names_the_missing_file(tmp_path, capsys):
    assert main(["classify", "predict", "--model-dir", str(tmp_path), "hello"]) == 1
    assert "review_classifier" in capsys.readouterr().err
