"""Bad inputs a new user meets get one clear line naming the file or setting, never a raw traceback."""

from __future__ import annotations

import pytest
import torch

from ftkit.cli import main


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny classifier trained for one epoch on 8 texts per split."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("clf")
    args = ["classify", "train", "--model", "tiny", "--limit", "8", "--device", "cpu"]
    assert main([*args, "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    torch.set_num_threads(before)
    return out


def test_predict_answers_the_valid_texts_and_marks_the_empty_one(classifier, capsys):
    capsys.readouterr()
    code = main(["classify", "predict", "--model-dir", str(classifier), "Win cash!", "", "hi"])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 3, captured.out
    assert lines[0] in ("spam", "not spam") and lines[2] in ("spam", "not spam")
    assert lines[1] == "(empty text: not classified)"
    assert code == 1 and "[2] are empty" in captured.err, captured.err


def test_a_truncated_model_file_gets_a_clear_line_naming_it(classifier, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("review_classifier.json", "review_classifier.pth"):
        (broken / name).write_bytes((classifier / name).read_bytes())
    weights = broken / "review_classifier.pth"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["classify", "predict", "--model-dir", str(broken), "hello"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{weights} cannot be read: the file is truncated or corrupt" in err, err


@pytest.mark.parametrize("command", [["data", "list"], ["weights", "list"], ["data", "fetch"]])
def test_ftkit_home_pointing_at_a_file_is_a_clear_error(command, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("FTKIT_HOME", str(home))
    code = main(command)
    err = capsys.readouterr().err
    assert code in (1, 2) and f"{home} is a file, not a folder" in err, err
    assert "Traceback" not in err


def test_an_empty_spam_collection_file_names_its_path(tmp_path):
    from ftkit.data.spam import load_spam_data

    empty = tmp_path / "SMSSpamCollection"
    empty.write_text("")
    with pytest.raises(ValueError, match=f"{empty}: the file is empty"):
        load_spam_data(empty)


@pytest.mark.parametrize(("body", "why"), [("", "is empty"), ("Label,Text\n", "no rows")])
def test_an_empty_split_csv_names_its_path(tmp_path, body, why):
    from ftkit.data.spam import create_spam_loaders
    from ftkit.io.tokenizer import get_tokenizer

    good = tmp_path / "train.csv"
    good.write_text("Label,Text\n0,hello there\n1,win cash\n")
    empty = tmp_path / "validation.csv"
    empty.write_text(body)
    with pytest.raises(ValueError, match=f"{empty}: the CSV file .*{why}"):
        create_spam_loaders(good, empty, good, get_tokenizer())
