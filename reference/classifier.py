"""Classification fine-tuning (book ch. 6, §6.5-6.8): a 2-class head on GPT-2, its loss, accuracy and loop.

Chapter 6 reuses ch. 5's names `calc_loss_batch`, `calc_loss_loader` and `evaluate_model`
(`reference/training.py`). Lines beyond the book are marked `# kit:`; `token_position`
is exercise 6.3. Saving a classifier: `ftkit/io/classifier.py`; resuming: `ftkit/engine`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ftkit.checks import positive_int  # kit: clear errors for bad arguments

TRAINABLE_CHOICES = ("last_block", "all", "head")  # kit: exercise 6.2 and head-only options
TOKEN_POSITIONS = {"last": -1, "first": 0}  # kit: exercise 6.3


# §6.5: the classification head
def add_classification_head(
    model: nn.Module, num_classes: int = 2, trainable: str = "last_block"
) -> nn.Module:
    """Freeze the model, swap `out_head` for a `num_classes` linear layer, unfreeze what is tuned (book §6.5).

    `trainable`: "last_block" (the book: last block, final norm, head), "all" (exercise
    6.2) or "head". Returns the same model, changed in place.
    """
    if trainable not in TRAINABLE_CHOICES:  # kit: clear errors for bad arguments
        raise ValueError(f"trainable={trainable!r}: choose one of {list(TRAINABLE_CHOICES)}")
    old_head = model.out_head

    for param in model.parameters():
        param.requires_grad = False

    torch.manual_seed(123)
    head = nn.Linear(in_features=old_head.in_features, out_features=num_classes)
    # kit: built on the CPU right after seeding, as the book, then moved beside the old head
    model.out_head = head.to(device=old_head.weight.device, dtype=old_head.weight.dtype)

    if trainable == "all":  # kit: exercise 6.2
        for param in model.parameters():
            param.requires_grad = True
    elif trainable == "last_block":
        for param in model.trf_blocks[-1].parameters():
            param.requires_grad = True
        for param in model.final_norm.parameters():
            param.requires_grad = True
    return model


# §6.6: accuracy and loss on one token's logits
def _position(token_position: str) -> int:  # kit: exercise 6.3's option, checked
    if token_position not in TOKEN_POSITIONS:
        raise ValueError(
            f"token_position={token_position!r}: choose one of {list(TOKEN_POSITIONS)}"
        )
    return TOKEN_POSITIONS[token_position]


def calc_accuracy_loader(
    data_loader,
    model: nn.Module,
    device: torch.device | str,
    num_batches: int | None = None,
    *,
    token_position: str = "last",
) -> float:
    """Fraction of correctly predicted labels (argmax of the last token's logits) in eval mode (book §6.6)."""
    position = _position(token_position)  # kit
    model.eval()
    correct_predictions, num_examples = 0, 0

    if num_batches is None:  # noqa: SIM108 - the book's if/else
        num_batches = len(data_loader)
    else:
        num_batches = min(num_batches, len(data_loader))
    if num_batches == 0:  # kit: a clear error instead of a division by zero
        raise ValueError("calc_accuracy_loader: the data loader has no batches to score")
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i < num_batches:
            input_batch, target_batch = input_batch.to(device), target_batch.to(device)

            with torch.no_grad():
                logits = model(input_batch)[:, position, :]  # kit: the book's [:, -1, :]
            predicted_labels = torch.argmax(logits, dim=-1)

            num_examples += predicted_labels.shape[0]
            correct_predictions += (predicted_labels == target_batch).sum().item()
        else:
            break
    return correct_predictions / num_examples


def calc_loss_batch(
    input_batch: torch.Tensor,
    target_batch: torch.Tensor,
    model: nn.Module,
    device: torch.device | str,
    *,
    token_position: str = "last",
) -> torch.Tensor:
    """Cross-entropy of one batch on the last token's logits (book §6.6)."""
    position = _position(token_position)  # kit
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)[:, position, :]  # kit: exercise 6.3; the book's [:, -1, :]
    num_classes = logits.shape[-1]  # kit: one class index in [0, num_classes) per text
    valid = (target_batch >= 0) & (target_batch < num_classes)  # kit:
    if target_batch.shape != logits.shape[:1] or not valid.all():  # kit:
        raise ValueError(f"class labels must be one index in [0, {num_classes}) per text")
    loss = torch.nn.functional.cross_entropy(logits, target_batch)
    return loss


def calc_loss_loader(
    data_loader,
    model: nn.Module,
    device: torch.device | str,
    num_batches: int | None = None,
    *,
    token_position: str = "last",
) -> float:
    """Mean classification loss over the first `num_batches` batches; NaN when empty (book §6.6).

    The book's §5.1 `calc_loss_loader` with chapter 6's `calc_loss_batch`: the same
    batches and the same mean.
    """
    if num_batches is not None:  # kit: a clear error instead of a division by zero
        positive_int(num_batches, "num_batches")
    total_loss = 0.0
    if len(data_loader) == 0:
        return float("nan")
    elif num_batches is None:
        num_batches = len(data_loader)
    else:
        # Reduce the number of batches to match the total number of batches in the data loader
        # if num_batches exceeds the number of batches in the data loader
        num_batches = min(num_batches, len(data_loader))
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i < num_batches:
            loss = calc_loss_batch(  # kit: token_position (exercise 6.3)
                input_batch, target_batch, model, device, token_position=token_position
            )
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
    *,
    token_position: str = "last",
) -> tuple[float, float]:
    """Train and validation loss on `eval_iter` batches each in eval mode, then train mode again (book §6.7)."""
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(  # kit: token_position (exercise 6.3)
            train_loader, model, device, num_batches=eval_iter, token_position=token_position
        )
        val_loss = calc_loss_loader(  # kit: token_position (exercise 6.3)
            val_loader, model, device, num_batches=eval_iter, token_position=token_position
        )
    model.train()
    return train_loss, val_loss


# §6.7: the training loop and its plots
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
    """Fine-tune a classifier, evaluating every `eval_freq` steps and after each epoch (book §6.7).

    Returns `(train_losses, val_losses, train_accs, val_accs, examples_seen)`;
    `token_position="first"` trains on the first token's logits (exercise 6.3).
    """
    positive_int(num_epochs, "num_epochs")  # kit: clear errors for bad arguments
    positive_int(eval_freq, "eval_freq")  # kit
    positive_int(eval_iter, "eval_iter")  # kit
    if len(train_loader) == 0:  # kit: a loader with drop_last=True can be empty
        raise ValueError("train_classifier_simple: the training loader has no batches")
    # Lists to track losses and examples seen
    train_losses, val_losses, train_accs, val_accs = [], [], [], []
    examples_seen, global_step = 0, -1

    for epoch in range(num_epochs):
        model.train()  # dropout on for training
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()  # gradients of the previous step must not add up
            loss = calc_loss_batch(  # kit: token_position (exercise 6.3)
                input_batch, target_batch, model, device, token_position=token_position
            )
            loss.backward()
            optimizer.step()
            examples_seen += input_batch.shape[0]  # examples instead of tokens
            global_step += 1

            if global_step % eval_freq == 0:  # optional evaluation step
                train_loss, val_loss = evaluate_model(  # kit: token_position (exercise 6.3)
                    model,
                    train_loader,
                    val_loader,
                    device,
                    eval_iter,
                    token_position=token_position,
                )
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                print(
                    f"Ep {epoch + 1} (Step {global_step:06d}): "
                    f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
                )

        # Accuracy after each epoch
        train_accuracy = calc_accuracy_loader(  # kit: token_position (exercise 6.3)
            train_loader, model, device, num_batches=eval_iter, token_position=token_position
        )
        val_accuracy = calc_accuracy_loader(  # kit: token_position (exercise 6.3)
            val_loader, model, device, num_batches=eval_iter, token_position=token_position
        )
        print(f"Training accuracy: {train_accuracy * 100:.2f}% | ", end="")
        print(f"Validation accuracy: {val_accuracy * 100:.2f}%")
        train_accs.append(train_accuracy)
        val_accs.append(val_accuracy)

    return train_losses, val_losses, train_accs, val_accs, examples_seen


def plot_values(
    epochs_seen: Sequence[float],
    examples_seen: Sequence[float],
    train_values: Sequence[float],
    val_values: Sequence[float],
    label: str = "loss",
):
    """Plot training and validation curves against epochs and examples seen; returns the Figure (book §6.7)."""
    from matplotlib.figure import Figure  # kit: no window, no global pyplot state

    lengths = [len(epochs_seen), len(examples_seen), len(train_values), len(val_values)]  # kit
    if len(set(lengths)) != 1 or not lengths[0]:  # kit: a clear error for unequal inputs
        raise ValueError(f"plot_values needs equally long, non-empty sequences; got {lengths}")
    fig = Figure(figsize=(5, 3))  # kit: the book's plt.subplots(figsize=(5, 3)), no pyplot
    ax1 = fig.add_subplot()  # kit:

    # Plot training and validation values against epochs
    ax1.plot(epochs_seen, train_values, label=f"Training {label}")
    ax1.plot(epochs_seen, val_values, linestyle="-.", label=f"Validation {label}")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel(label.capitalize())
    ax1.legend()

    # A second x-axis: the same curve against examples seen, drawn invisibly to align the ticks
    ax2 = ax1.twiny()
    ax2.plot(examples_seen, train_values, alpha=0)
    ax2.set_xlabel("Examples seen")

    fig.tight_layout()
    return fig  # kit: the caller saves it (the book writes f"{label}-plot.pdf")


# §6.8: using the classifier
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
    """Label a text "spam" or "not spam", padded to `max_length` as in training (book §6.8).

    `max_length=None` pads nothing and only cuts to the model's context (kit).
    """
    position = _position(token_position)  # kit: exercise 6.3
    if not isinstance(text, str) or not text.strip():  # kit: clear errors for bad arguments
        raise ValueError(f"classify_review: the text {text!r} is empty; nothing to classify")
    context = model.pos_emb.weight.shape[0]  # kit: a clear error for a wrong max_length
    if max_length is not None and not 1 <= max_length <= context:  # kit
        raise ValueError(f"max_length={max_length} must lie in [1, {context}]")
    model.eval()
    input_ids = tokenizer.encode(text)  # prepare inputs to the model
    supported_context_length = model.pos_emb.weight.shape[0]
    # Truncate sequences if they are too long (kit: max_length=None cuts to the context only)
    input_ids = input_ids[  # kit: max_length=None cuts to the context only
        : min(max_length or supported_context_length, supported_context_length)
    ]

    # Pad sequences to the longest sequence
    if max_length is not None:  # kit: max_length=None pads nothing
        input_ids += [pad_token_id] * (max_length - len(input_ids))
    input_tensor = torch.tensor(input_ids, device=device).unsqueeze(0)  # add batch dimension

    with torch.no_grad():  # model inference
        logits = model(input_tensor)[:, position, :]  # kit: exercise 6.3; the book's [:, -1, :]
    predicted_label = torch.argmax(logits, dim=-1).item()
    return "spam" if predicted_label == 1 else "not spam"
