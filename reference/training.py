"""Next-token loss and the book's simple training loop (book §5.1-5.2, used again for SFT in §7.6).

The functions are the book's listings; lines beyond them (input checks) are marked
`# kit:`. Resumable training with checkpoints and progress bars lives in
`ftkit/engine/trainer.py`, which drives these same step functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import tiktoken
import torch
from torch import nn

from ftkit.checks import positive_int  # kit: clear errors for bad arguments
from reference.generation import generate_text_simple, text_to_token_ids, token_ids_to_text


def calc_loss_batch(
    input_batch: torch.Tensor,
    target_batch: torch.Tensor,
    model: nn.Module,
    device: torch.device | str,
) -> torch.Tensor:
    """Mean cross-entropy of the model's next-token logits against the targets (book §5.1).

    Targets equal to -100 (PyTorch's default `ignore_index`) do not count: that is
    how padding and masked prompt tokens are left out in §7.3.
    """
    if input_batch.shape != target_batch.shape:  # kit: targets are inputs shifted by one
        raise ValueError(
            f"input_batch {tuple(input_batch.shape)} and target_batch "
            f"{tuple(target_batch.shape)} must have the same (batch, tokens) shape: "
            "targets are the inputs shifted by one token"
        )
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)
    # cross_entropy wants (N, classes) and (N,): merge the batch and token dimensions.
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())
    return loss


def calc_loss_loader(
    data_loader,
    model: nn.Module,
    device: torch.device | str,
    num_batches: int | None = None,
) -> float:
    """Average `calc_loss_batch` over the first `num_batches` batches (all by default) (book §5.1).

    An empty loader gives `nan`; `num_batches` above `len(data_loader)` is capped.
    """
    if num_batches is not None:  # kit: a clear error instead of a division by zero
        positive_int(num_batches, "num_batches")
    total_loss = 0.0
    if len(data_loader) == 0:
        return float("nan")
    elif num_batches is None:
        num_batches = len(data_loader)
    else:
        num_batches = min(num_batches, len(data_loader))
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i < num_batches:
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            total_loss += loss.item()
        else:
            break
    return total_loss / num_batches


def evaluate_model(
    model: nn.Module,
    train_loader,
    val_loader,
    device: torch.device | str,
    eval_iter: int,
) -> tuple[float, float]:
    """Training and validation loss over `eval_iter` batches each, in eval mode (book §5.2).

    Dropout is off while scoring; the model is put back in training mode afterwards.
    """
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    model.train()
    return train_loss, val_loss


def generate_and_print_sample(
    model: nn.Module,
    tokenizer: tiktoken.Encoding,
    device: torch.device | str,
    start_context: str,
) -> None:
    """Print a 50-token greedy continuation of `start_context` on one line (book §5.2)."""
    model.eval()
    context_size = model.pos_emb.weight.shape[0]
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    with torch.no_grad():
        token_ids = generate_text_simple(
            model=model, idx=encoded, max_new_tokens=50, context_size=context_size
        )
        decoded_text = token_ids_to_text(token_ids, tokenizer)
        print(decoded_text.replace("\n", " "))  # compact print format
    model.train()


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
    """Train with next-token loss, evaluating every `eval_freq` steps and sampling each epoch (book §5.2).

    Prints `Ep 1 (Step 000000): Train loss 2.637, Val loss 2.626` at each
    evaluation and a generated sample after each epoch; returns
    `(train_losses, val_losses, track_tokens_seen)`.
    """
    positive_int(num_epochs, "num_epochs")  # kit: clear errors for bad arguments
    positive_int(eval_freq, "eval_freq")  # kit
    positive_int(eval_iter, "eval_iter")  # kit
    if len(train_loader) == 0:  # kit: a loader with drop_last=True can be empty
        raise ValueError(
            "train_model_simple: the training loader has no batches (with drop_last=True a "
            "data set smaller than batch_size gives none)"
        )
    # Lists to track losses and tokens seen
    train_losses, val_losses, track_tokens_seen = [], [], []
    tokens_seen, global_step = 0, -1  # the first step is 0, and 0 % eval_freq == 0

    for epoch in range(num_epochs):
        model.train()  # dropout on for training
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()  # gradients of the previous step must not add up
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            optimizer.step()
            tokens_seen += input_batch.numel()
            global_step += 1

            if global_step % eval_freq == 0:  # optional evaluation step
                train_loss, val_loss = evaluate_model(
                    model, train_loader, val_loader, device, eval_iter
                )
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
                print(
                    f"Ep {epoch + 1} (Step {global_step:06d}): "
                    f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
                )

        # A sample text after each epoch shows what the model has learned
        generate_and_print_sample(model, tokenizer, device, start_context)

    return train_losses, val_losses, track_tokens_seen


def plot_losses(
    epochs_seen: Sequence[float],
    tokens_seen: Sequence[float],
    train_losses: Sequence[float],
    val_losses: Sequence[float],
):
    """Plot training and validation loss against epochs, with tokens seen on a top axis (book §5.1).

    Returns the matplotlib Figure (kit: the book saves `loss-plot.pdf` and shows it;
    `ftkit.engine.plots.save_figure` writes it where a caller wants it).
    """
    from matplotlib.figure import Figure  # kit: no window, no global pyplot state
    from matplotlib.ticker import MaxNLocator  # kit: the book imports it at the top

    lengths = {len(epochs_seen), len(tokens_seen), len(train_losses), len(val_losses)}  # kit
    if len(lengths) != 1 or not len(train_losses):  # kit: a clear error for unequal inputs
        raise ValueError(
            "plot_losses needs equally long, non-empty sequences; got lengths "
            f"{[len(epochs_seen), len(tokens_seen), len(train_losses), len(val_losses)]}"
        )
    fig = Figure(figsize=(5, 3))  # kit: the book's plt.subplots(figsize=(5, 3)), no pyplot
    ax1 = fig.add_subplot()  # kit:

    # Plot training and validation loss against epochs
    ax1.plot(epochs_seen, train_losses, label="Training loss")
    ax1.plot(epochs_seen, val_losses, linestyle="-.", label="Validation loss")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel("Loss")
    ax1.legend(loc="upper right")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs on the x-axis

    # A second x-axis: the same curve against tokens seen, drawn invisibly to align the ticks
    ax2 = ax1.twiny()
    ax2.plot(tokens_seen, train_losses, alpha=0)
    ax2.set_xlabel("Tokens seen")

    fig.tight_layout()
    return fig  # kit: the caller saves it (the book writes loss-plot.pdf)
