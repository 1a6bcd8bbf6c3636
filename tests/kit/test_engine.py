"""The kit's trainer (`ftkit.engine.trainer`): the book's loops step for step, resume, checkpoints, plots.

The engine must give exactly the numbers of the book's `train_model_simple` (§5.2) and
`train_classifier_simple` (§6.7) from `reference/` on the same seed and data (fp32,
a tiny model), and a run resumed from its epoch-1 checkpoint must equal an
uninterrupted one.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from functools import partial

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import reference.classifier as ch6
import reference.training as ch5
from ftkit.asserts import assert_equal, assert_tensor_equal
from ftkit.data.instruction import load_instruction_data
from ftkit.engine import trainer
from ftkit.engine.backend import make_backend
from ftkit.engine.plots import plot_losses_png, plot_values_pngs
from ftkit.engine.trainer import History, fit
from ftkit.io.classifier import load_classifier, save_classifier
from ftkit.io.tokenizer import get_tokenizer
from ftkit.presets import get_config
from reference.collate import custom_collate_fn
from reference.instruction_data import InstructionDataset
from reference.model import GPTModel

pytestmark = pytest.mark.usefixtures("one_thread")

BOOK = make_backend("cpu", exact=True)  # the book's code, float32

START = "Below is an instruction"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer()


@pytest.fixture(scope="module")
def lm_data(tokenizer):
    """8 shuffled training entries of the book's instruction data (§7.2) in batches of 4, and 4 val."""
    data = load_instruction_data()
    collate = partial(custom_collate_fn, allowed_max_length=24)
    train = [InstructionDataset(data[:8], tokenizer)[i] for i in range(8)]
    val = [InstructionDataset(data[-4:], tokenizer)[i] for i in range(4)]
    return (
        DataLoader(train, batch_size=4, shuffle=True, drop_last=True, collate_fn=collate),
        DataLoader(val, batch_size=4, collate_fn=collate),
    )


@pytest.fixture(scope="module")
def spam_data(tokenizer):
    """Six labelled texts padded to one length, shuffled in batches of 2 (as §6.3's loaders)."""
    texts = [("WINNER! Claim your cash prize now", 1), ("Free entry, text WIN now", 1)]
    texts += [("See you at lunch?", 0), ("Ok, call me later", 0)]
    texts += [("URGENT: you won a bonus", 1), ("Are you home yet", 0)]
    ids = [tokenizer.encode(t) for t, _ in texts]
    width = max(map(len, ids))
    rows = torch.tensor([x + [50256] * (width - len(x)) for x in ids])
    dataset = TensorDataset(rows, torch.tensor([label for _, label in texts]))
    return (
        DataLoader(dataset, batch_size=2, shuffle=True, drop_last=True),
        DataLoader(dataset, batch_size=2),
    )


def lm_model(seed: int = 123):
    torch.manual_seed(seed)
    return GPTModel(get_config("tiny", emb_dim=16, n_layers=1, n_heads=2, context_length=32))


def classifier_model(seed: int = 123):
    torch.manual_seed(seed)
    model = GPTModel(get_config("tiny", emb_dim=16, n_layers=1, n_heads=2, context_length=32))
    return ch6.add_classification_head(model, trainable="all")


def adamw(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)


def printed(fn, *args, **kwargs):
    out = io.StringIO()
    with redirect_stdout(out):
        result = fn(*args, **kwargs)
    return result, out.getvalue().splitlines()


# ------------------------------------------------------------------ the book's numbers


def test_engine_equals_the_books_train_model_simple(lm_data, tokenizer):
    train, val = lm_data
    model = lm_model()
    torch.manual_seed(123)
    book, book_lines = printed(
        ch5.train_model_simple, model, train, val, adamw(model), "cpu", 2, 1, 1, START, tokenizer
    )
    book_state = model.state_dict()

    model = lm_model()
    optimizer = adamw(model)
    torch.manual_seed(123)
    history, lines = printed(
        fit,
        model,
        train,
        val,
        optimizer,
        "cpu",
        steps=BOOK.next_token_steps(tokenizer, START),
        num_epochs=2,
        eval_freq=1,
        eval_iter=1,
        progress=False,
    )
    assert_equal(
        (history.train_losses, history.val_losses, history.track_tokens_seen),
        book,
        name="(train_losses, val_losses, track_tokens_seen) at every step",
        why="the engine runs the book's steps (§5.2) in the book's order",
    )
    assert_equal(lines[:-1], book_lines, name="printed lines", why="the book's log and samples")
    assert lines[-1].startswith("Training completed in"), lines[-1]
    for key, value in book_state.items():
        assert_tensor_equal(model.state_dict()[key], value, name=key)


def test_engine_equals_the_books_train_classifier_simple(spam_data):
    train, val = spam_data
    model = classifier_model()
    torch.manual_seed(123)
    book, book_lines = printed(
        ch6.train_classifier_simple, model, train, val, adamw(model), "cpu", 2, 1, 2
    )

    model = classifier_model()
    optimizer = adamw(model)
    torch.manual_seed(123)
    history, lines = printed(
        fit,
        model,
        train,
        val,
        optimizer,
        "cpu",
        steps=BOOK.classification_steps(),
        num_epochs=2,
        eval_freq=1,
        eval_iter=2,
        progress=False,
    )
    assert_equal(
        (
            history.train_losses,
            history.val_losses,
            history.train_accs,
            history.val_accs,
            history.examples_seen,
        ),
        book,
        name="(train_losses, val_losses, train_accs, val_accs, examples_seen)",
        why="the engine runs the book's classification steps (§6.7) in the book's order",
    )
    assert_equal(lines[:-1], book_lines, name="printed lines")


# ------------------------------------------------------------------ resuming


@pytest.mark.parametrize("task", ["next_token", "classification"])
def test_resume_after_epoch_1_reproduces_an_uninterrupted_run(
    task, lm_data, spam_data, tokenizer, tmp_path, monkeypatch
):

    train, val = lm_data if task == "next_token" else spam_data
    make = lm_model if task == "next_token" else classifier_model
    steps = (
        BOOK.next_token_steps(tokenizer, START)
        if task == "next_token"
        else BOOK.classification_steps()
    )
    quiet = {"steps": steps, "eval_freq": 1, "eval_iter": 1, "say": lambda _: None}

    def run(model, optimizer, epochs, **kwargs):
        with redirect_stdout(io.StringIO()):  # the per-epoch samples
            return fit(model, train, val, optimizer, "cpu", num_epochs=epochs, **quiet, **kwargs)

    model = make()
    torch.manual_seed(123)
    full = run(model, adamw(model), 2, progress=True)  # the bar must change nothing
    full_state = model.state_dict()

    model = make()
    torch.manual_seed(123)
    run(model, adamw(model), 1, checkpoint=tmp_path / "ckpt.pth", settings={"lr": 1e-3})
    torch.manual_seed(999)  # a new process: nothing but the checkpoint carries over

    model = make(seed=7)
    optimizer = adamw(model)
    state = trainer.load_checkpoint(tmp_path / "ckpt.pth", {"lr": 1e-3}, ["lr"])
    assert_equal(state["epoch"], 0, name="checkpoint epoch (0-based, last finished)")
    history = trainer.restore_checkpoint(state, model, optimizer)
    resumed = run(model, optimizer, 2, history=history, progress=False)
    assert_equal(resumed, full, name="history resumed vs uninterrupted")
    for key, value in full_state.items():
        assert_tensor_equal(model.state_dict()[key], value, name=key, why="resuming loses nothing")


def test_a_finished_run_says_so_and_trains_nothing(spam_data):
    train, val = spam_data
    model = classifier_model()
    lines: list[str] = []
    done = History(epochs_done=2)
    fit(
        model,
        train,
        val,
        adamw(model),
        "cpu",
        steps=BOOK.classification_steps(),
        num_epochs=2,
        eval_freq=1,
        eval_iter=1,
        history=done,
        say=lines.append,
    )
    assert lines == ["Already trained 2 epoch(s) (asked for 2); nothing to train"], lines


def test_checkpoint_with_other_settings_is_refused(tmp_path):
    model = lm_model()
    trainer.save_checkpoint(
        tmp_path / "c.pth",
        model=model,
        optimizer=adamw(model),
        history=History(epochs_done=1),
        settings={"style": "alpaca"},
    )
    with pytest.raises(ValueError, match="style: checkpoint 'alpaca' vs now 'phi3'"):
        trainer.load_checkpoint(tmp_path / "c.pth", {"style": "phi3"}, ["style"])
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        trainer.load_checkpoint(tmp_path / "bad.pth", {}, [])


def test_history_round_trips_and_names_missing_keys():
    history = History(train_losses=[1.0], track_tokens_seen=[8], tokens_seen=8, global_step=0)
    assert_equal(History.from_dict(history.to_dict()), history, name="history round trip")
    partial_dict = history.to_dict()
    del partial_dict["global_step"]
    with pytest.raises(ValueError, match="global_step"):
        History.from_dict(partial_dict)


# ------------------------------------------------------------------ plots and saved classifiers


def test_plots_are_pngs_written_atomically(tmp_path):
    history = History(
        train_losses=[10.9, 9.0, 8.1],
        val_losses=[10.9, 9.5, 9.0],
        track_tokens_seen=[0, 100, 200],
        train_accs=[0.5, 0.7],
        val_accs=[0.5, 0.6],
        examples_seen=80,
        epochs_done=2,
    )
    path = plot_losses_png(history, tmp_path / "l.png")
    assert path.read_bytes()[:8] == PNG, "the loss plot must be a PNG file"
    plots = plot_values_pngs(history, tmp_path)
    assert sorted(plots) == ["accuracy", "loss"]
    assert all(p.read_bytes()[:8] == PNG for p in plots.values())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["accuracy-plot.png", "l.png", "loss-plot.png"], f"temporary files? {names}"
    assert plot_losses_png(History(), tmp_path / "none.png") is None, "nothing to plot: no file"


def test_book_plot_functions_return_a_figure_with_the_books_axes():
    fig = ch5.plot_losses([0.0, 1.0], [0, 100], [2.0, 1.0], [2.5, 1.5])
    ax1, ax2 = fig.axes
    assert_equal((ax1.get_xlabel(), ax1.get_ylabel()), ("Epochs", "Loss"), name="axes labels")
    assert_equal(ax2.get_xlabel(), "Tokens seen", name="top axis label")
    fig = ch6.plot_values([0.0, 1.0], [0, 40], [0.5, 0.8], [0.5, 0.7], label="accuracy")
    assert_equal(fig.axes[0].get_ylabel(), "Accuracy", name="y label (§6.7)")
    assert_equal(fig.axes[1].get_xlabel(), "Examples seen", name="top axis label")


def test_saved_classifier_reloads_with_its_padded_length(tmp_path, tokenizer):
    model = classifier_model()
    save_classifier(model, tmp_path / "clf", max_length=24)
    loaded, meta = load_classifier(tmp_path / "clf")
    assert_equal((meta["max_length"], meta["num_classes"]), (24, 2), name="meta")
    for key, value in model.state_dict().items():
        assert_tensor_equal(loaded.state_dict()[key], value, name=key)
    text = "Free entry to win cash"
    assert_equal(
        ch6.classify_review(text, loaded, tokenizer, "cpu", meta["max_length"]),
        ch6.classify_review(text, model, tokenizer, "cpu", 24),
        name="label after reloading",
    )


def test_loading_a_missing_classifier_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="review_classifier"):
        load_classifier(tmp_path)
