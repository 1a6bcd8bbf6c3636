"""Chapter 6's spam classifier recipe: `train` (setup -> train -> save) and `predict`.

`train` follows the book's §6.2-6.8 code step by step (GPT-2 124M, balanced SMS spam
data split 70/10/20, batch 8, a 2-class head on the last token, last block + final
norm trainable, AdamW lr 5e-5, weight decay 0.1, 5 epochs, eval every 50 steps over
5 batches, seed 123), with the chapter's exercises as options: `pad_to_context`
(6.1), `trainable="all"` (6.2) and `token_position="first"` (6.3). It checkpoints at
the end of each epoch and a rerun continues from there (`resume=False`, the CLI's
`--restart`, starts over) with the numbers an uninterrupted run gives. `predict` labels texts with a saved classifier.

Everything the recipe writes goes into one output folder (default `runs/classify-<model>`):

- `data/{train,validation,test}.csv` (the book's split);
- `review_classifier.pth` (the book's file name) and `review_classifier.json` beside
  it (model config, classes, padded length, settings, accuracies);
- `review_classifier-checkpoint.pth` (model, optimizer, RNG state, history, epoch);
- `loss-plot.png`, `accuracy-plot.png` (the book's §6.7 plots, as PNG);
- `history.json` (losses, accuracies and settings).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from ftkit.data.spam import SPLIT_FILES, create_spam_loaders
from ftkit.doctor import report_device
from ftkit.engine.backend import make_backend
from ftkit.engine.batched import classify_texts
from ftkit.engine.distributed import Dist, one_unless
from ftkit.engine.plots import plot_values_pngs
from ftkit.engine.trainer import History
from ftkit.io.classifier import MODEL_FILE, load_classifier, save_classifier
from ftkit.io.tokenizer import get_tokenizer
from ftkit.presets import get_config
from ftkit.recipes.config import ClassifyConfig
from ftkit.recipes.runtime import (
    canonical_preset,
    check_out_dir,
    resolve_device,
    resume_state,
    run_dir,
    start,
    train_epochs,
    write_json,
)
from ftkit.recipes.settings import configure, resume_keys, run_settings
from reference.classifier import add_classification_head, calc_accuracy_loader

CHECKPOINT_FILE = "review_classifier-checkpoint.pth"
DATA_DIR = "data"


# Settings that must match between a checkpoint and the run resuming from it.
RESUME_KEYS = resume_keys(ClassifyConfig)


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


def train(
    out_dir: str | os.PathLike | None = None,
    *,
    config: ClassifyConfig | None = None,
    say: Callable[[str], None] = print,
    dist: Dist | None = None,
    **overrides: Any,
) -> dict:
    """Fine-tune GPT-2 as a spam classifier as the book's chapter 6 (§6.2-6.8); returns paths, accuracies, history.

    `config` (default: the book's settings) with keyword `overrides` (`epochs=1`, ...).
    `dist` makes this one rank of a data-parallel run (`ftkit.engine.distributed`):
    rank 0 writes every file; the other ranks return after training (no "model" key).
    """
    c = configure(ClassifyConfig, config, overrides, out_dir)

    # --- setup: folder, resume check, data (§6.2-6.3), device, settings
    preset = canonical_preset(c.model)
    cfg = get_config(preset)
    out = check_out_dir(run_dir("classify", preset, c.out))  # before any work
    checkpoint = out / CHECKPOINT_FILE
    dist = one_unless(dist, c.device)
    dev = dist.device
    backend = make_backend(dev, exact=c.exact, precision=c.precision)
    # Before any file is written: a refused resume (other settings) changes nothing.
    wanted = run_settings(c, preset=preset, backend=backend)
    state = resume_state(checkpoint, wanted, RESUME_KEYS, resume=c.resume, say=say)
    report_device(dev, say)  # one line when this device computes wrong
    dist.main_writes(write_spam_splits, out, c.limit)  # the other ranks read the CSVs
    csvs = {name: out / DATA_DIR / SPLIT_FILES[name] for name in SPLIT_FILES}
    train_loader, val_loader, test_loader = create_spam_loaders(
        csvs["train"],
        csvs["validation"],
        csvs["test"],
        get_tokenizer(),
        batch_size=c.batch_size,
        max_length=cfg["context_length"] if c.pad_to_context else None,
        seed=c.seed,  # the book seeds before building the loaders (§6.3)
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
            f"give no full batch of {c.batch_size}; raise --limit"
        )
    say(f"{len(train_loader)} training batches")
    say(f"{len(val_loader)} validation batches")
    say(f"{len(test_loader)} test batches")
    settings = run_settings(c, preset=preset, backend=backend, max_length=padded)
    say(backend.describe())

    # --- model (§6.4-6.5): fresh GPT-2 with the new head, or the last checkpoint
    run = start(preset, state, models_dir=c.models_dir)
    if not run.pretrained:
        say(
            f"WARNING: model {preset!r} is randomly initialised, NOT GPT-2 (no pretrained "
            "weights needed, none loaded): it shows the pipeline runs end to end, but expect "
            "accuracies far below the book's. Use it for quick checks only."
        )
    settings["pretrained"] = run.pretrained
    gpt = add_classification_head(run.model, num_classes=2, trainable=c.trainable)
    gpt = dist.wrap(backend.prepare(gpt))  # fused on the fast path; wrapped/sharded over ranks
    steps = backend.classification_steps(c.token_position, mean=dist.mean)
    optimizer = backend.optimizer(gpt, lr=c.lr, weight_decay=c.weight_decay)
    history = run.restore(optimizer, gpt, dist)
    if history is None:
        history = History()
        torch.manual_seed(c.seed)  # the book reseeds before training (§6.7)

    # --- train (§6.7)
    gpt, history = train_epochs(
        gpt,
        (train_loader, val_loader),
        optimizer,
        dev,
        steps=steps,
        config=c,
        history=history,
        checkpoint=checkpoint,
        settings=settings,
        say=say,
        dist=dist,
        backend=backend,
    )
    if gpt is None:  # a rank after 0 of a data-parallel run
        return {"out": out, "history": history.to_dict(), "settings": settings}
    with backend.autocast():
        accuracies = {
            name: calc_accuracy_loader(loader, gpt, dev, token_position=c.token_position)
            for name, loader in (
                ("train", train_loader),
                ("val", val_loader),
                ("test", test_loader),
            )
        }
    say(f"Training accuracy: {accuracies['train'] * 100:.2f}%")
    say(f"Validation accuracy: {accuracies['val'] * 100:.2f}%")
    say(f"Test accuracy: {accuracies['test'] * 100:.2f}%")

    # --- save (§6.8): plots, the classifier with its settings, the history
    plots = plot_values_pngs(history, out)
    save_classifier(
        gpt,
        out,
        max_length=padded,
        token_position=c.token_position,
        extra={
            "settings": settings,
            "epochs_trained": history.epochs_done,
            "accuracy": accuracies,
        },
    )
    hist = history.to_dict()
    write_json(
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


def predict(
    model_dir: str | os.PathLike,
    texts: Iterable[str],
    *,
    device: str = "auto",
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> list[str | None]:
    """Label each text "spam" or "not spam" with a classifier saved by `train` (book §6.8).

    An empty (or blank) text gets None: the others are still answered. A classifier trained
    from a randomly initialised model (`--model tiny`) is said to be one (`say`).
    """
    dev = resolve_device(device)
    gpt, meta = load_classifier(model_dir, dev)
    settings = meta.get("settings") or {}
    if settings.get("pretrained") is False:
        say(
            f"WARNING: {model_dir} holds a classifier trained from a randomly initialised "
            f"model ({settings.get('model', 'tiny')!r}, not GPT-2's pretrained weights): its "
            "labels are little better than guesses. Train with --model gpt2-small for the "
            "book's accuracy."
        )
    tokenizer = get_tokenizer()
    options = {k: meta[k] for k in ("pad_token_id", "token_position") if k in meta}
    # classify_review's labels (§6.8), several texts per forward pass; an empty text is None.
    labels = iter(
        classify_texts(
            [t for t in texts if isinstance(t, str) and t.strip()],
            gpt,
            tokenizer,
            dev,
            meta["max_length"],
            **options,
        )
    )
    return [next(labels) if isinstance(t, str) and t.strip() else None for t in texts]
