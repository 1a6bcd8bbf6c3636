"""Your classification fine-tuning (book ch. 6, §6.5-6.8): replace each NotImplementedError.

Chapter 6 reuses ch. 5's names `calc_loss_batch`, `calc_loss_loader` and
`evaluate_model` for the classification versions, as the book does. Each takes
`token_position="last"` (the book) or `"first"` (exercise 6.3).
Check your work with `pytest --impl exercises tests/book/test_classifier.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

TRAINABLE_CHOICES = ("last_block", "all", "head")
TOKEN_POSITIONS = {"last": -1, "first": 0}


def add_classification_head(
    model: nn.Module, num_classes: int = 2, trainable: str = "last_block"
) -> nn.Module:
    """Freeze the model, swap `out_head` for a `num_classes` linear layer, unfreeze what is tuned (book §6.5)."""
    raise NotImplementedError(
        "set requires_grad=False on every parameter, torch.manual_seed(123), then "
        "model.out_head = nn.Linear(emb_dim, num_classes); unfreeze trf_blocks[-1] and "
        "final_norm ('last_block'), everything ('all', exercise 6.2) or only the head ('head') (book §6.5)"
    )


def calc_accuracy_loader(
    data_loader,
    model: nn.Module,
    device: torch.device | str,
    num_batches: int | None = None,
    *,
    token_position: str = "last",
) -> float:
    """Fraction of correctly predicted labels (argmax of the last token's logits) in eval mode (book §6.6)."""
    raise NotImplementedError(
        "in eval mode and under torch.no_grad(), take model(input_batch)[:, -1, :] (index 0 for "
        "token_position='first'), argmax it and count matches with the targets (book §6.6)"
    )


def calc_loss_batch(
    input_batch: torch.Tensor,
    target_batch: torch.Tensor,
    model: nn.Module,
    device: torch.device | str,
    *,
    token_position: str = "last",
) -> torch.Tensor:
    """Cross-entropy of one batch on the last token's logits (book §6.6)."""
    raise NotImplementedError(
        "move both batches to device, logits = model(input_batch)[:, -1, :], return "
        "torch.nn.functional.cross_entropy(logits, target_batch) (book §6.6)"
    )


def calc_loss_loader(
    data_loader,
    model: nn.Module,
    device: torch.device | str,
    num_batches: int | None = None,
    *,
    token_position: str = "last",
) -> float:
    """Mean classification loss over the first `num_batches` batches; NaN when empty (book §6.6)."""
    raise NotImplementedError(
        "average this module's calc_loss_batch(...).item() over min(num_batches, len(loader)) "
        "batches; return float('nan') for an empty loader (book §6.6)"
    )


def evaluate_model(
    model: nn.Module,
    train_loader,
    val_loader,
    device: torch.device | str,
    eval_iter: int,
    *,
    token_position: str = "last",
) -> tuple[float, float]:
    """Train and validation loss on `eval_iter` batches each in eval mode, then train mode again (book §6.7)."""
    raise NotImplementedError(
        "model.eval(); under torch.no_grad() compute this module's calc_loss_loader on both "
        "loaders with num_batches=eval_iter; model.train(); return both (book §6.7)"
    )


def train_classifier_simple(
    model: nn.Module,
    train_loader,
    val_loader,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    num_epochs: int,
    eval_freq: int,
    eval_iter: int,
    *,
    token_position: str = "last",
) -> tuple[list[float], list[float], list[float], list[float], int]:
    """Fine-tune a classifier, evaluating every `eval_freq` steps and after each epoch (book §6.7)."""
    raise NotImplementedError(
        "per batch: zero_grad, calc_loss_batch, backward, step, count examples; every "
        "eval_freq steps print 'Ep 1 (Step 000000): Train loss ..., Val loss ...'; after each "
        "epoch print both accuracies on eval_iter batches; pass token_position on (book §6.7)"
    )


def plot_values(
    epochs_seen: Sequence[float],
    examples_seen: Sequence[float],
    train_values: Sequence[float],
    val_values: Sequence[float],
    label: str = "loss",
):
    """Plot training and validation curves against epochs and examples seen; returns the Figure (book §6.7)."""
    raise NotImplementedError(
        "plot train and val values against epochs_seen, add ax1.twiny() for examples_seen "
        "and return the Figure (the book saves f'{label}-plot.pdf') (book §6.7)"
    )


def classify_review(
    text: str,
    model: nn.Module,
    tokenizer,
    device: torch.device | str,
    max_length: int | None = None,
    pad_token_id: int = 50256,
    *,
    token_position: str = "last",
) -> str:
    """Label a text "spam" or "not spam", padded to `max_length` as in training (book §6.8)."""
    raise NotImplementedError(
        "encode, cut to min(max_length, context length), pad with pad_token_id to max_length, "
        "argmax the last token's logits: 1 -> 'spam', 0 -> 'not spam'; reject empty text (book §6.8)"
    )
