"""Next-token loss and the book's simple training loop (book §5.1-5.2, used again for SFT in §7.6).

`train_model_simple` prints exactly the book's lines and returns the book's three
lists. Its keyword-only extras make long runs resumable: `on_epoch_end(epoch,
history)` hands the caller everything needed to checkpoint after each epoch, and
`start_epoch` + `history` continue a run so that it produces the same losses as an
uninterrupted one (given the model, optimizer and torch RNG state saved with it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import tiktoken
import torch
from torch import nn
from tqdm.auto import tqdm

from ftkit.io.files import atomic_path
from reference.generation import generate_text_simple, text_to_token_ids, token_ids_to_text

HISTORY_KEYS = ("train_losses", "val_losses", "track_tokens_seen", "tokens_seen", "global_step")
SAMPLE_TOKENS = 50  # new tokens in the per-epoch sample, as the book


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
    if not isinstance(input_batch, torch.Tensor) or not isinstance(target_batch, torch.Tensor):
        raise TypeError("calc_loss_batch expects input_batch and target_batch as tensors")
    if input_batch.shape != target_batch.shape:
        raise ValueError(
            f"input_batch {tuple(input_batch.shape)} and target_batch "
            f"{tuple(target_batch.shape)} must have the same (batch, tokens) shape: "
            "targets are the inputs shifted by one token"
        )
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)
    # cross_entropy wants (N, classes) and (N,): merge the batch and token dimensions.
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())


def calc_loss_loader(
    data_loader,
    model: nn.Module,
    device: torch.device | str,
    num_batches: int | None = None,
) -> float:
    """Average `calc_loss_batch` over the first `num_batches` batches (all by default) (book §5.1).

    An empty loader gives `nan`, as the book's function does; `num_batches` above
    `len(data_loader)` is capped. Runs without gradients.
    """
    if num_batches is not None and (
        isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1
    ):
        raise ValueError(f"num_batches must be None or a positive int, got {num_batches!r}")
    if len(data_loader) == 0:
        return float("nan")
    limit = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total_loss = 0.0
    with torch.no_grad():
        for i, (input_batch, target_batch) in enumerate(data_loader):
            if i >= limit:
                break
            total_loss += calc_loss_batch(input_batch, target_batch, model, device).item()
    return total_loss / limit


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
    try:
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    finally:
        model.train()
    return train_loss, val_loss


def _context_size(model: nn.Module) -> int:
    pos_emb = getattr(model, "pos_emb", None)
    if not isinstance(pos_emb, nn.Embedding):
        raise TypeError(
            f"{type(model).__name__} has no pos_emb embedding to read its context length from"
        )
    return pos_emb.weight.shape[0]


def generate_and_print_sample(
    model: nn.Module,
    tokenizer: tiktoken.Encoding,
    device: torch.device | str,
    start_context: str,
) -> None:
    """Print a 50-token greedy continuation of `start_context` on one line (book §5.2)."""
    model.eval()
    try:
        encoded = text_to_token_ids(start_context, tokenizer).to(device)
        token_ids = generate_text_simple(model, encoded, SAMPLE_TOKENS, _context_size(model))
        print(token_ids_to_text(token_ids, tokenizer).replace("\n", " "))  # compact print format
    finally:
        model.train()


def _start_history(history: dict | None) -> dict:
    """A fresh history (the book's starting values) or a copy of the one to resume from."""
    if history is None:
        return {
            "train_losses": [],
            "val_losses": [],
            "track_tokens_seen": [],
            "tokens_seen": 0,
            "global_step": -1,  # the first step is 0, and 0 % eval_freq == 0 evaluates it
        }
    if not isinstance(history, dict):
        raise TypeError(f"history must be the dict given to on_epoch_end, got {type(history)}")
    missing = [key for key in HISTORY_KEYS if key not in history]
    if missing:
        raise ValueError(f"history lacks {missing}; pass the dict given to on_epoch_end")
    return {key: list(v) if isinstance(v, list) else v for key, v in history.items()}


def _check_loop_args(
    train_loader, num_epochs: int, eval_freq: int, eval_iter: int, start_epoch: int
):
    for name, value, low in (
        ("num_epochs", num_epochs, 0),
        ("eval_freq", eval_freq, 1),
        ("eval_iter", eval_iter, 1),
        ("start_epoch", start_epoch, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if len(train_loader) == 0:
        raise ValueError(
            "train_model_simple: the training loader has no batches (with drop_last=True a "
            "data set smaller than batch_size gives none)"
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
    *,
    start_epoch: int = 0,
    history: dict | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    progress: bool = False,
) -> tuple[list[float], list[float], list[int]]:
    """Train with next-token loss, evaluating every `eval_freq` steps and sampling each epoch (book §5.2).

    Prints `Ep 1 (Step 000000): Train loss 2.637, Val loss 2.626` at each
    evaluation and a generated sample after each epoch; returns
    `(train_losses, val_losses, track_tokens_seen)`.

    Resuming: `on_epoch_end(epoch, history)` is called after each finished epoch
    (0-based) with a copy of `{"train_losses", "val_losses", "track_tokens_seen",
    "tokens_seen", "global_step"}`. Save it with the model, optimizer and torch RNG
    state; later restore those and call with `start_epoch=epoch + 1` and that
    `history`. The returned lists then cover all epochs. `progress=True` shows a
    tqdm bar over the steps.
    """
    _check_loop_args(train_loader, num_epochs, eval_freq, eval_iter, start_epoch)
    state = _start_history(history)
    bar = tqdm(
        total=len(train_loader) * max(num_epochs - start_epoch, 0),
        disable=not progress,
        desc="training",
        unit="step",
    )
    try:
        for epoch in range(start_epoch, num_epochs):
            model.train()
            for input_batch, target_batch in train_loader:
                optimizer.zero_grad()  # gradients of the previous step must not add up
                loss = calc_loss_batch(input_batch, target_batch, model, device)
                loss.backward()
                optimizer.step()
                state["tokens_seen"] += input_batch.numel()
                state["global_step"] += 1
                bar.update(1)
                if state["global_step"] % eval_freq == 0:
                    train_loss, val_loss = evaluate_model(
                        model, train_loader, val_loader, device, eval_iter
                    )
                    state["train_losses"].append(train_loss)
                    state["val_losses"].append(val_loss)
                    state["track_tokens_seen"].append(state["tokens_seen"])
                    bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}")
                    print(
                        f"Ep {epoch + 1} (Step {state['global_step']:06d}): "
                        f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
                    )
            generate_and_print_sample(model, tokenizer, device, start_context)
            if on_epoch_end is not None:
                on_epoch_end(
                    epoch, {k: list(v) if isinstance(v, list) else v for k, v in state.items()}
                )
    finally:
        bar.close()
    return state["train_losses"], state["val_losses"], state["track_tokens_seen"]


def plot_losses(
    epochs_seen: Sequence[float],
    tokens_seen: Sequence[float],
    train_losses: Sequence[float],
    val_losses: Sequence[float],
    path: str | Path = "loss-plot.png",
) -> Path:
    """Plot training and validation loss against epochs, with tokens seen on a top axis (book §5.1).

    Writes a PNG atomically (the book writes `loss-plot.pdf`) and returns its path.
    Uses a bare matplotlib Figure: no window, no global pyplot state.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    lengths = {
        "epochs_seen": len(epochs_seen),
        "tokens_seen": len(tokens_seen),
        "train_losses": len(train_losses),
        "val_losses": len(val_losses),
    }
    if len(set(lengths.values())) != 1 or not lengths["train_losses"]:
        raise ValueError(f"plot_losses needs equally long, non-empty sequences; got {lengths}")
    path = Path(path)

    def floats(values: Sequence[float]) -> list[float]:
        return [float(v) for v in values]

    fig = Figure(figsize=(5, 3))
    ax1 = fig.add_subplot()
    ax1.plot(floats(epochs_seen), floats(train_losses), label="Training loss")
    ax1.plot(floats(epochs_seen), floats(val_losses), linestyle="-.", label="Validation loss")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel("Loss")
    ax1.legend(loc="upper right")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs on the x-axis
    ax2 = ax1.twiny()  # a second x-axis: the same curve against tokens seen, drawn invisibly
    ax2.plot(floats(tokens_seen), floats(train_losses), alpha=0)
    ax2.set_xlabel("Tokens seen")
    fig.tight_layout()

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
