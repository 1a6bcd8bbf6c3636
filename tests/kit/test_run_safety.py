"""Runs that tell the truth (issue 13): rerun continues, Ctrl-C says what a rerun does, `--out` is checked first.

Every case is run as a new user would, through `ftkit.cli.main` on the tiny model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ftkit.cli import main
from ftkit.engine import trainer

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSIFY = ["classify", "train", "--model", "tiny", "--limit", "8", "--device", "cpu"]
INSTRUCT = ["instruct", "train", "--model", "tiny", "--limit", "10", "--device", "cpu"]


def run(command: list[str], out: Path, *extra: str) -> int:
    return main([*command, "--out", str(out), "--no-progress", *extra])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def losses(command: list[str], out: Path) -> dict:
    if command is CLASSIFY:
        return json.loads((out / "history.json").read_text())["history"]
    record = json.loads((out / "tiny-sft.json").read_text())
    return {k: record[k] for k in ("train_losses", "val_losses", "tokens_seen")}


def interrupt_after_first_epoch(monkeypatch) -> None:
    """Ctrl-C right after epoch 1's checkpoint is written."""
    real_save = trainer.save_checkpoint

    def save_then_interrupt(path, *, history, **kwargs):
        real_save(path, history=history, **kwargs)
        if history.epochs_done == 1:
            monkeypatch.setattr(trainer, "save_checkpoint", real_save)
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_interrupt)


# ------------------------------------------------------------------ rerun continues


@pytest.mark.parametrize(
    "command",
    # The instruct run repeats the same resume code on a bigger model: slow work (CI's own step).
    [CLASSIFY, pytest.param(INSTRUCT, marks=pytest.mark.slow)],
    ids=["classify", "instruct"],
)
def test_plain_rerun_after_ctrl_c_continues_with_the_losses_of_an_uninterrupted_run(
    command, tmp_path, monkeypatch, capsys
):
    assert run(command, tmp_path / "straight", "--epochs", "2") == 0
    interrupt_after_first_epoch(monkeypatch)
    assert run(command, tmp_path / "split", "--epochs", "2") == 130
    err = capsys.readouterr().err
    assert "epoch 1 of 2 is saved in" in err, err
    assert "rerunning the same command continues with epoch 2" in err, err

    assert run(command, tmp_path / "split", "--epochs", "2") == 0  # the same command, as told
    printed = capsys.readouterr().out
    assert "Resuming from" in printed and "Ep 1 (" not in printed, printed
    assert losses(command, tmp_path / "split") == losses(command, tmp_path / "straight")


def test_restart_starts_over_and_the_message_says_so(tmp_path, monkeypatch, capsys):
    assert run(CLASSIFY, tmp_path, "--epochs", "1") == 0
    interrupt_after_first_epoch(monkeypatch)
    assert run(CLASSIFY, tmp_path, "--epochs", "2", "--restart") == 130
    captured = capsys.readouterr()
    assert "starting over" in captured.out and "Resuming" not in captured.out
    assert "without --restart continues with epoch 2" in captured.err, captured.err


def test_resume_flag_is_still_accepted(tmp_path, capsys):
    assert run(CLASSIFY, tmp_path, "--epochs", "1") == 0
    assert run(CLASSIFY, tmp_path, "--epochs", "1", "--resume") == 0
    assert "nothing to train" in capsys.readouterr().out


def test_ctrl_c_before_the_first_epoch_says_a_rerun_starts_from_the_beginning(
    tmp_path, monkeypatch, capsys
):
    import ftkit.recipes.classify as classify

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(classify, "write_spam_splits", interrupted)
    assert run(CLASSIFY, tmp_path) == 130
    err = capsys.readouterr().err
    assert "starts training from the beginning" in err and "continues" not in err, err


def test_ctrl_c_during_ftkit_check_does_not_talk_about_training(monkeypatch, capsys):
    import ftkit.check.run as check

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "check_once", interrupted)
    assert main(["check"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "rerun" not in err and "resume" not in err, err


# ------------------------------------------------------------------ a refused resume


@pytest.mark.parametrize(
    "changed", [["--limit", "16"], ["--trainable", "all"]], ids=["limit", "trainable"]
)
def test_refused_resume_leaves_every_file_of_the_run_byte_identical(tmp_path, changed, capsys):
    assert run(CLASSIFY, tmp_path, "--epochs", "1") == 0
    before = snapshot(tmp_path)
    assert run(CLASSIFY, tmp_path, "--epochs", "2", *changed) == 1
    err = capsys.readouterr().err
    assert "other settings" in err and "--restart" in err, err
    assert snapshot(tmp_path) == before, "a refused resume must not change the run's files"


# ------------------------------------------------------------------ --out


@pytest.mark.parametrize("command", [CLASSIFY, INSTRUCT], ids=["classify", "instruct"])
def test_out_naming_a_file_fails_before_any_work(command, tmp_path, capsys):
    target = tmp_path / "model.pth"
    target.write_text("not a folder")
    assert run(command, target) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0, captured.err  # one line
    assert "is a file, not a folder" in captured.err
    assert "Training" not in captured.out and "batches" not in captured.out, captured.out


def test_out_under_a_file_fails_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert run(CLASSIFY, tmp_path / "file" / "run") == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", [CLASSIFY, INSTRUCT], ids=["classify", "instruct"])
def test_read_only_out_fails_before_any_work(command, tmp_path, monkeypatch, capsys):
    """Tests run as root, where chmod stops no write: `os.access` is faked to say read-only.

    (As a normal user, `test_read_only_out_for_real` checks a chmod-ed folder too.)
    """
    import ftkit.recipes.runtime as runtime

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        runtime.os,
        "access",
        lambda path, mode, **kw: Path(path) != locked and real_access(path, mode, **kw),
    )
    assert run(command, locked / "run") == 2
    captured = capsys.readouterr()
    assert f"{locked} is not writable" in captured.err, captured.err
    assert "batches" not in captured.out and not (locked / "run").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_for_real(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        assert run(CLASSIFY, locked) == 2
    finally:
        locked.chmod(0o755)
    assert "not writable" in capsys.readouterr().err


def test_out_defaults_to_a_named_run_folder_not_the_current_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*CLASSIFY, "--epochs", "1", "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert (tmp_path / "runs" / "classify-tiny" / "review_classifier.pth").is_file()


# ------------------------------------------------------------------ flags and usage


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["instruct", "train", "--bogus"], "usage: ftkit instruct train"),
        (["instruct", "respond", "--bogus"], "usage: ftkit instruct respond"),
        (["classify", "train", "--bogus"], "usage: ftkit classify train"),
        (["data", "fetch", "--bogus"], "usage: ftkit data fetch"),
    ],
)
def test_an_unknown_option_prints_the_subcommands_usage(args, usage, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage) and "unrecognized arguments: --bogus" in err, err


@pytest.mark.parametrize("action", ["train", "respond", "judge", "all"])
def test_every_instruct_step_takes_no_progress(action):
    from ftkit.cli import build_parser

    args = build_parser().parse_args(["instruct", action, "--no-progress"])
    assert args.progress is False


@pytest.mark.parametrize(
    ("action", "flags", "theirs"),
    [
        ("judge", ["--epochs", "1"], "train"),
        ("judge", ["--batch-size", "2"], "respond"),
        ("respond", ["--limit", "10"], "train"),
        ("train", ["--judge-model", "llama3"], "judge"),
    ],
)
def test_each_instruct_step_takes_its_own_flags(action, flags, theirs, capsys):
    """One CLI shape for both pipelines: `ftkit PIPELINE STEP [that step's flags]` (issue 21)."""
    from ftkit.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["instruct", action, *flags])
    assert f"usage: ftkit instruct {action}" in capsys.readouterr().err
    args = build_parser().parse_args(["instruct", theirs, *flags])  # the step that owns them
    assert args.action == theirs
    assert build_parser().parse_args(["instruct", "all", *flags]).action == "all"


def test_weights_fetch_takes_no_progress_too():
    from ftkit.cli import build_parser

    assert build_parser().parse_args(["weights", "fetch", "124M", "--no-progress"]).quiet
