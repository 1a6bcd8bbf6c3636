"""Your next-token loss and training loop (book §5.1-5.2, used for SFT in §7.6): fill in each
function, then run `pytest --impl exercises tests/book/test_training.py`.

`generate_text_simple`, `text_to_token_ids` and `token_ids_to_text` come from the
reference here, so the loop can be written before the generation exercises.
"""

from __future__ import annotations

from collections.abc import Sequence

import tiktoken
import torch
from torch import nn

from reference.generation import (  # noqa: F401
    generate_text_simple,
    text_to_token_ids,
    token_ids_to_text,
)


def calc_loss_batch(
    input_batch: torch.Tensor,
    target_batch: torch.Tensor,
    model: nn.Module,
    device: torch.device | str,
) -> torch.Tensor:
    """Mean cross-entropy of the model's next-token logits against the targets (book §5.1)."""
    raise NotImplementedError(
        "move both batches to device, logits = model(input_batch), then "
        "cross_entropy(logits.flatten(0, 1), target_batch.flatten()) (book §5.1)"
    )


def calc_loss_loader(
    data_loader,
    model: nn.Module,
    device: torch.device | str,
    num_batches: int | None = None,
) -> float:
    """Average `calc_loss_batch` over the first `num_batches` batches (all by default) (book §5.1)."""
    raise NotImplementedError(
        "nan for an empty loader; cap num_batches at len(data_loader); sum "
        "calc_loss_batch(...).item() over that many batches and divide (book §5.1)"
    )


def evaluate_model(
    model: nn.Module,
    train_loader,
    val_loader,
    device: torch.device | str,
    eval_iter: int,
) -> tuple[float, float]:
    """Training and validation loss over `eval_iter` batches each, in eval mode (book §5.2)."""
    raise NotImplementedError(
        "model.eval(); under torch.no_grad() calc_loss_loader on both loaders with "
        "num_batches=eval_iter; model.train() again (book §5.2)"
    )


def generate_and_print_sample(
    model: nn.Module,
    tokenizer: tiktoken.Encoding,
    device: torch.device | str,
    start_context: str,
) -> None:
    """Print a 50-token greedy continuation of `start_context` on one line (book §5.2)."""
    raise NotImplementedError(
        "model.eval(); context_size = model.pos_emb.weight.shape[0]; generate_text_simple 50 "
        "tokens; print the text with newlines replaced by spaces; model.train() (book §5.2)"
    )


def train_model_simple(
    model: nn.Module,
    train_loader,
    val_loader,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    num_epochs: int,
    eval_freq: int,
    eval_iter: int,
    start_context: str,
    tokenizer: tiktoken.Encoding,
) -> tuple[list[float], list[float], list[int]]:
    """Train with next-token loss, evaluating every `eval_freq` steps and sampling each epoch (book §5.2)."""
    raise NotImplementedError(
        "per batch: zero_grad, calc_loss_batch, backward, step; count tokens_seen and "
        "global_step (from -1); every eval_freq steps evaluate_model and print "
        "'Ep {epoch+1} (Step {step:06d}): Train loss {:.3f}, Val loss {:.3f}'; after each "
        "epoch generate_and_print_sample; return the three lists (book §5.2)"
    )


def plot_losses(
    epochs_seen: Sequence[float],
    tokens_seen: Sequence[float],
    train_losses: Sequence[float],
    val_losses: Sequence[float],
):
    """Plot training and validation loss against epochs, with tokens seen on a top axis (book §5.1)."""
    raise NotImplementedError(
        "plot both losses against epochs_seen, add ax1.twiny() with tokens_seen as the top "
        "axis and return the Figure (the book saves loss-plot.pdf) (book §5.1)"
    )
