"""Checkpoints carry a format version and a metrics dict; one written by the kit before versions still resumes.

`fixtures/checkpoint-v1.pth` was written by `small_run(1, ...)` below with the code of
main before this change (no "version" key, `History` without `metrics`): resuming it
for a second epoch must give the history of an uninterrupted 2-epoch run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ftkit.engine.backend import make_backend
from ftkit.engine.trainer import (
    CHECKPOINT_VERSION,
    History,
    fit,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from ftkit.presets import get_config
from reference.model import GPTModel

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-v1.pth"
CFG = get_config("tiny", vocab_size=50, context_length=8, emb_dim=16, n_layers=1, n_heads=2)


def small_run(epochs: int, checkpoint: Path | None, state: dict | None = None) -> History:
    """A seeded 1-layer model trained with the book's steps on 16 random sequences."""
    g = torch.Generator().manual_seed(1)
    inputs = torch.randint(0, 50, (16, 6), generator=g)
    targets = torch.roll(inputs, -1, dims=1)
    data = torch.utils.data.TensorDataset(inputs, targets)
    torch.manual_seed(0)
    model = GPTModel(CFG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, drop_last=True)
    history = None if state is None else restore_checkpoint(state, model, optimizer)
    book = make_backend("cpu", exact=True)
    return fit(
        model,
        loader,
        loader,
        optimizer,
        "cpu",
        steps=book.next_token_steps(_Tokenizer(), "a"),
        num_epochs=epochs,
        eval_freq=2,
        eval_iter=1,
        history=history,
        checkpoint=checkpoint,
        settings={"run": "small"},
        progress=False,
        say=lambda _: None,
    )


class _Tokenizer:
    """Enough of tiktoken for the book's sample: token ids below the 50-token vocabulary."""

    def encode(self, text, allowed_special=None):
        return [ord(c) % 50 for c in text]

    def decode(self, ids):
        return " ".join(map(str, ids))


@pytest.mark.usefixtures("one_thread")
def test_a_checkpoint_from_before_versions_still_resumes():
    state = load_checkpoint(FIXTURE, {"run": "small"}, ("run",))
    assert "version" not in state, "the fixture must stay in the old format"
    resumed = small_run(2, None, state)
    whole = small_run(2, None)
    assert resumed.to_dict() == whole.to_dict()  # the losses of a run never stopped


def test_checkpoints_carry_their_version_and_metrics(tmp_path):
    history = History(train_losses=[1.0], metrics={"perplexity": [2.7]})
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    path = tmp_path / "c.pth"
    save_checkpoint(path, model=model, optimizer=optimizer, history=history, settings={})
    state = load_checkpoint(path, {}, ())
    assert state["version"] == CHECKPOINT_VERSION
    assert History.from_dict(state["history"]).metrics == {"perplexity": [2.7]}


def test_a_new_metric_does_not_break_resume():
    stored = {**History().to_dict(), "bleu": [0.1, 0.2]}  # a metric this kit does not know
    stored.pop("train_accs")  # and one it does, missing
    history = History.from_dict(stored)
    assert history.metrics == {"bleu": [0.1, 0.2]} and history.train_accs == []
    with pytest.raises(ValueError, match="not a training history"):
        History.from_dict({"train_losses": []})


def test_a_checkpoint_from_a_newer_kit_is_a_clear_error(tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"version": CHECKPOINT_VERSION + 1, "settings": {}}, path)
    with pytest.raises(ValueError, match="newer"):
        load_checkpoint(path, {}, ())
