"""Chapter 6's spam classifier recipe as functions: `train` and `predict`.

`train` follows the book's §6.2-6.8 code step by step (GPT-2 124M, balanced SMS spam
data split 70/10/20, batch 8, a 2-class head on the last token, last block + final
norm trainable, AdamW lr 5e-5, weight decay 0.1, 5 epochs, eval every 50 steps over
5 batches, seed 123), with the chapter's exercises as options: `pad_to_context`
(6.1), `trainable="all"` (6.2) and `token_position="first"` (6.3). It checkpoints at
the end of each epoch and `resume=True` continues from there with the numbers an
uninterrupted run gives. `predict` labels texts with a saved classifier.

Everything the recipe writes goes into one output folder:

- `data/{train,validation,test}.csv` (the book's split);
- `review_classifier.pth` (the book's file name) and `review_classifier.json` beside
  it (model config, classes, padded length, settings, accuracies);
- `review_classifier-checkpoint.pth` (model, optimizer, RNG state, history, epoch);
- `loss-plot.png`, `accuracy-plot.png` (the book's §6.7 plots, as PNG).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from ftkit.doctor import report_device
from ftkit.recipes.instruct import (
    atomic_write_json,
    build_model,
    canonical_preset,
    load_checkpoint,
    resolve_device,
    restore_checkpoint,
    run_epochs,
)
from reference.classifier import MODEL_FILE
from reference.model import GPTModel, get_config

DEFAULT_MODEL = "gpt2-small (124M)"  # the book's CHOOSE_MODEL in §6.4
BOOK_SEED = 123
CHECKPOINT_FILE = "review_classifier-checkpoint.pth"
DATA_DIR = "data"
# Settings that must match between a checkpoint and the run resuming from it.
RESUME_KEYS = (
    "model",
    "limit",
    "batch_size",
    "lr",
    "weight_decay",
    "eval_freq",
    "eval_iter",
    "seed",
    "trainable",
    "token_position",
    "max_length",
)


# ------------------------------------------------------------------ data (§6.2-6.3)


def write_spam_splits(out_dir: Path, limit: int | None = None) -> dict[str, Path]:
    """The book's balanced 70/10/20 split as CSVs in `out_dir/data`; `limit` keeps N rows per split."""
    from ftkit.data.spam import load_spam_data, map_labels, write_splits
    from reference.spam_data import create_balanced_dataset, random_split

    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit}: keep at least one row per split")
    splits = random_split(map_labels(create_balanced_dataset(load_spam_data())), 0.7, 0.1)
    if limit is not None:
        splits = tuple(frame.head(limit) for frame in splits)
    return write_splits(*splits, out_dir / DATA_DIR)


class _EpochProgress:
    """A training loader that shows a progress bar when iterated for training, not for evaluation.

    The book's trainer iterates the same loader to train (model in train mode) and to
    evaluate (eval mode); only the former gets a bar.
    """

    def __init__(self, loader, model: nn.Module, first_epoch: int, enabled: bool):
        self.loader, self.model, self.epoch, self.enabled = loader, model, first_epoch, enabled

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if not (self.enabled and self.model.training):
            return iter(self.loader)
        self.epoch += 1
        return self._with_bar()

    def _with_bar(self):
        from tqdm.auto import tqdm

        # A bar updated by hand: wrapping the loader in tqdm() changes the order of its
        # random draws, so the shuffle would differ from a run without a bar.
        with tqdm(total=len(self.loader), desc=f"epoch {self.epoch}", unit="batch") as bar:
            for batch in self.loader:
                yield batch
                bar.update()


def _curves(history: dict, epochs: int, out: Path) -> dict[str, Path]:
    """The book's loss and accuracy plots (§6.7) as PNGs."""
    from reference.classifier import plot_values

    plots = {}
    losses, accs = history["train_losses"], history["train_accs"]
    if losses:
        epochs_seen = torch.linspace(0, epochs, len(losses))
        examples = torch.linspace(0, history["examples_seen"], len(losses))
        plots["loss"] = plot_values(
            epochs_seen, examples, losses, history["val_losses"], "loss", out / "loss-plot.png"
        )
    if accs:
        epochs_seen = torch.linspace(0, epochs, len(accs))
        examples = torch.linspace(0, history["examples_seen"], len(accs))
        plots["accuracy"] = plot_values(
            epochs_seen, examples, accs, history["val_accs"], "accuracy", out / "accuracy-plot.png"
        )
    return plots


# ------------------------------------------------------------------ the recipe


def train(
    out_dir: str | os.PathLike = ".",
    *,
    model: str = DEFAULT_MODEL,
    epochs: int = 5,
    batch_size: int = 8,
    lr: float = 5e-5,
    weight_decay: float = 0.1,
    eval_freq: int = 50,
    eval_iter: int = 5,
    trainable: str = "last_block",
    token_position: str = "last",
    pad_to_context: bool = False,
    limit: int | None = None,
    device: str = "auto",
    resume: bool = False,
    seed: int = BOOK_SEED,
    models_dir: str | os.PathLike | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> dict:
    """Fine-tune GPT-2 as a spam classifier as the book's chapter 6 (§6.2-6.8); returns paths, accuracies, history."""
    from ftkit.data.spam import create_spam_loaders
    from ftkit.io.tokenizer import get_tokenizer
    from reference.classifier import (
        add_classification_head,
        calc_accuracy_loader,
        save_classifier,
        train_classifier_simple,
    )

    if epochs < 1:
        raise ValueError(f"epochs={epochs}: train at least one epoch")
    preset = canonical_preset(model)
    cfg = get_config(preset)
    max_length = cfg["context_length"] if pad_to_context else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    report_device(dev, say)  # one line when this device computes wrong

    csvs = write_spam_splits(out, limit)
    train_loader, val_loader, test_loader = create_spam_loaders(
        csvs["train"],
        csvs["validation"],
        csvs["test"],
        get_tokenizer(),
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,  # the book seeds before building the loaders (§6.3)
    )
    padded = train_loader.dataset.max_length
    if padded > cfg["context_length"]:
        raise ValueError(
            f"the longest training text has {padded} tokens, more than the model's context "
            f"{cfg['context_length']}: the book's check in §6.3 fails"
        )
    if len(train_loader) == 0 or len(val_loader) == 0:
        raise ValueError(
            f"{len(train_loader.dataset)} training / {len(val_loader.dataset)} validation texts "
            f"give no full batch of {batch_size}; raise --limit"
        )
    say(f"{len(train_loader)} training batches")
    say(f"{len(val_loader)} validation batches")
    say(f"{len(test_loader)} test batches")

    settings = {
        "model": preset,
        "limit": limit,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "eval_freq": eval_freq,
        "eval_iter": eval_iter,
        "seed": seed,
        "trainable": trainable,
        "token_position": token_position,
        "max_length": padded,
        "epochs": epochs,
    }
    checkpoint = out / CHECKPOINT_FILE
    state = None
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint, settings, RESUME_KEYS)
        say(f"Resuming from {checkpoint} (epoch {state['epoch'] + 1} done)")
        gpt, pretrained = GPTModel(cfg), state["settings"].get("pretrained", False)
    else:
        if resume:
            say(f"No checkpoint at {checkpoint}: starting from the beginning")
        gpt, pretrained = build_model(preset, models_dir=models_dir)
    if not pretrained:
        say(
            f"WARNING: model {preset!r} is randomly initialised, NOT GPT-2 (no pretrained "
            "weights needed, none loaded): it shows the pipeline runs end to end, but expect "
            "accuracies far below the book's. Use it for quick checks only."
        )
    settings["pretrained"] = pretrained
    add_classification_head(gpt, num_classes=2, trainable=trainable)
    gpt.to(dev)

    optimizer = torch.optim.AdamW(gpt.parameters(), lr=lr, weight_decay=weight_decay)
    start_epoch, history = 0, None
    if state is not None:
        start_epoch, history = restore_checkpoint(state, gpt, optimizer)
    else:
        torch.manual_seed(seed)  # the book reseeds before training (§6.7)

    hist, epochs_done = run_epochs(
        partial(
            train_classifier_simple,
            gpt,
            _EpochProgress(train_loader, gpt, start_epoch, progress),
            val_loader,
            optimizer,
            dev,
        ),
        gpt,
        optimizer,
        checkpoint,
        settings,
        start_epoch=start_epoch,
        history=history,
        epochs=epochs,
        say=say,
        eval_freq=eval_freq,
        eval_iter=eval_iter,
        token_position=token_position,
        log=say,
    )

    accuracies = {
        name: calc_accuracy_loader(loader, gpt, dev, token_position=token_position)
        for name, loader in (("train", train_loader), ("val", val_loader), ("test", test_loader))
    }
    say(f"Training accuracy: {accuracies['train'] * 100:.2f}%")
    say(f"Validation accuracy: {accuracies['val'] * 100:.2f}%")
    say(f"Test accuracy: {accuracies['test'] * 100:.2f}%")

    plots = _curves(hist, epochs_done, out)
    save_classifier(
        gpt,
        out,
        max_length=padded,
        token_position=token_position,
        extra={"settings": settings, "epochs_trained": epochs_done, "accuracy": accuracies},
    )
    atomic_write_json(
        {"history": hist, "accuracy": accuracies, "settings": settings}, out / "history.json"
    )
    for name, path in plots.items():
        say(f"{name.capitalize()} plot saved as {path}")
    say(f"Model saved as {out / MODEL_FILE}")
    return {
        "out": out,
        "model": out / MODEL_FILE,
        "plots": plots,
        "accuracy": accuracies,
        "history": hist,
        "settings": settings,
    }


# ------------------------------------------------------------------ using it (§6.8)


def predict(
    model_dir: str | os.PathLike, texts: Iterable[str], *, device: str = "auto"
) -> list[str]:
    """Label each text "spam" or "not spam" with a classifier saved by `train` (book §6.8)."""
    from ftkit.io.tokenizer import get_tokenizer
    from reference.classifier import classify_review, load_classifier

    dev = resolve_device(device)
    gpt, meta = load_classifier(model_dir, dev)
    tokenizer = get_tokenizer()
    return [
        classify_review(
            text,
            gpt,
            tokenizer,
            dev,
            max_length=meta["max_length"],
            pad_token_id=meta.get("pad_token_id", 50256),
            token_position=meta.get("token_position", "last"),
        )
        for text in texts
    ]
