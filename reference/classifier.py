"""Classification fine-tuning (book ch. 6, §6.5-6.8): a 2-class head on GPT-2, its loss, accuracy and trainer.

The book reuses the names `calc_loss_batch`/`calc_loss_loader`/`evaluate_model` for
the classification variants; here they are `calc_loss_batch_classifier`,
`calc_loss_loader_classifier` and `evaluate_model_classifier`, because every kit
name belongs to exactly one reference module (the LM versions live in training.py).

Every function reading logits takes `token_position="last"` (the book) or
`"first"` (exercise 6.3): with causal attention only the last token has seen the
whole text, so it carries the most information for the label.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ftkit.io.files import atomic_path, write_text_atomic

TRAINABLE_CHOICES = ("last_block", "all", "head")
TOKEN_POSITIONS = {"last": -1, "first": 0}
LABELS = (
    "not spam",
    "spam",
)  # class index -> label, as the book's spam/ham mapping (ham=0, spam=1)
MODEL_FILE = "review_classifier.pth"  # the book's file name (§6.8)
META_FILE = "review_classifier.json"
META_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# §6.5: the classification head
# ---------------------------------------------------------------------------------------------


def add_classification_head(
    model: nn.Module, num_classes: int = 2, trainable: str = "last_block"
) -> nn.Module:
    """Freeze the model, swap `out_head` for a `num_classes` linear layer, unfreeze what is tuned (book §6.5).

    `trainable="last_block"` is the book's choice (last transformer block, final
    norm and the new head); `"all"` fine-tunes every layer (exercise 6.2); `"head"`
    trains the new output layer only. The head is created right after
    `torch.manual_seed(123)`, as in the book, so its initial weights are the book's.
    Returns the same model, changed in place.
    """
    if trainable not in TRAINABLE_CHOICES:
        raise ValueError(f"trainable={trainable!r}: choose one of {list(TRAINABLE_CHOICES)}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r}: a classifier needs at least 2 classes")
    old_head = getattr(model, "out_head", None)
    if not isinstance(old_head, nn.Linear):
        raise TypeError(
            f"{type(model).__name__} has no `out_head` linear layer to replace; "
            "add_classification_head expects the book's GPTModel"
        )

    for param in model.parameters():
        param.requires_grad = False

    torch.manual_seed(123)
    # Built on the CPU right after seeding (as the book) so the initial weights do not
    # depend on where the model lives, then moved next to the old head.
    head = nn.Linear(in_features=old_head.in_features, out_features=num_classes)
    model.out_head = head.to(device=old_head.weight.device, dtype=old_head.weight.dtype)

    if trainable == "all":
        for param in model.parameters():
            param.requires_grad = True
    elif trainable == "last_block":
        for param in model.trf_blocks[-1].parameters():
            param.requires_grad = True
        for param in model.final_norm.parameters():
            param.requires_grad = True
    # A freshly created nn.Linear is trainable, so "head" needs nothing more.
    return model


# ---------------------------------------------------------------------------------------------
# §6.6: loss and accuracy on one token's logits
# ---------------------------------------------------------------------------------------------


def _token_logits(model: nn.Module, input_batch: torch.Tensor, token_position: str) -> torch.Tensor:
    """The (batch, num_classes) logits of the chosen token of each row."""
    if token_position not in TOKEN_POSITIONS:
        raise ValueError(
            f"token_position={token_position!r}: choose one of {list(TOKEN_POSITIONS)}"
        )
    logits = model(input_batch)
    if logits.dim() != 3:
        raise ValueError(
            f"the model returned logits of shape {list(logits.shape)}; a classifier's are "
            "(batch, tokens, num_classes)"
        )
    return logits[:, TOKEN_POSITIONS[token_position], :]


def _num_batches(data_loader, num_batches: int | None) -> int:
    return len(data_loader) if num_batches is None else min(num_batches, len(data_loader))


def calc_accuracy_loader(
    data_loader,
    model: nn.Module,
    device: torch.device | str,
    num_batches: int | None = None,
    *,
    token_position: str = "last",
) -> float:
    """Fraction of correctly predicted labels over the first `num_batches` batches (book §6.6).

    The prediction is the argmax of the last token's logits (`token_position="first"`
    uses the first token instead, exercise 6.3). Puts the model in eval mode.
    """
    model.eval()
    correct, seen = 0, 0
    limit = _num_batches(data_loader, num_batches)
    if limit == 0:
        raise ValueError("calc_accuracy_loader: the data loader has no batches to score")
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= limit:
            break
        input_batch, target_batch = input_batch.to(device), target_batch.to(device)
        with torch.no_grad():
            logits = _token_logits(model, input_batch, token_position)
        predicted = torch.argmax(logits, dim=-1)
        seen += predicted.shape[0]
        correct += (predicted == target_batch).sum().item()
    return correct / seen


def calc_loss_batch_classifier(
    input_batch: torch.Tensor,
    target_batch: torch.Tensor,
    model: nn.Module,
    device: torch.device | str,
    *,
    token_position: str = "last",
) -> torch.Tensor:
    """Cross-entropy of one batch on the last token's logits: the book's ch. 6 `calc_loss_batch` (§6.6)."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = _token_logits(model, input_batch, token_position)
    if target_batch.dim() != 1 or target_batch.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets of shape {list(target_batch.shape)} do not match a batch of "
            f"{logits.shape[0]} texts: a classifier needs one class index per text"
        )
    if target_batch.numel() and (
        int(target_batch.min()) < 0 or int(target_batch.max()) >= logits.shape[-1]
    ):
        raise ValueError(
            f"class labels must lie in [0, {logits.shape[-1]}); got min "
            f"{int(target_batch.min())}, max {int(target_batch.max())}"
        )
    return nn.functional.cross_entropy(logits, target_batch)


def calc_loss_loader_classifier(
    data_loader,
    model: nn.Module,
    device: torch.device | str,
    num_batches: int | None = None,
    *,
    token_position: str = "last",
) -> float:
    """Mean classification loss over the first `num_batches` batches: the book's ch. 6 `calc_loss_loader` (§6.6).

    Returns NaN for an empty loader, as the book does.
    """
    if len(data_loader) == 0:
        return float("nan")
    limit = _num_batches(data_loader, num_batches)
    total = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= limit:
            break
        loss = calc_loss_batch_classifier(
            input_batch, target_batch, model, device, token_position=token_position
        )
        total += loss.item()
    return total / limit


def evaluate_model_classifier(
    model: nn.Module,
    train_loader,
    val_loader,
    device: torch.device | str,
    eval_iter: int,
    *,
    token_position: str = "last",
) -> tuple[float, float]:
    """Train and validation loss on `eval_iter` batches each, in eval mode: the book's ch. 6 `evaluate_model` (§6.7)."""
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader_classifier(
            train_loader, model, device, num_batches=eval_iter, token_position=token_position
        )
        val_loss = calc_loss_loader_classifier(
            val_loader, model, device, num_batches=eval_iter, token_position=token_position
        )
    model.train()
    return train_loss, val_loss


# ---------------------------------------------------------------------------------------------
# §6.7: the training loop
# ---------------------------------------------------------------------------------------------


def _empty_history() -> dict:
    return {
        "train_losses": [],
        "val_losses": [],
        "train_accs": [],
        "val_accs": [],
        "examples_seen": 0,
        "global_step": -1,
    }


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
    start_epoch: int = 0,
    history: dict | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    token_position: str = "last",
    log: Callable[[str], None] = print,
) -> tuple[list[float], list[float], list[float], list[float], int]:
    """Fine-tune a classifier, evaluating every `eval_freq` steps and after each epoch (book §6.7).

    Prints the book's lines (`Ep 1 (Step 000000): Train loss 2.153, Val loss 2.392`,
    `Training accuracy: 70.00% | Validation accuracy: 72.50%`) and returns
    `(train_losses, val_losses, train_accs, val_accs, examples_seen)`.

    Resuming: `on_epoch_end(epoch, history)` is called after each finished epoch
    (0-based) with everything needed to continue; save it with the model and
    optimizer state, then call again with `start_epoch=epoch + 1` and that
    `history` to go on exactly where it stopped (the returned lists cover all epochs).
    """
    for name, value in (
        ("num_epochs", num_epochs),
        ("eval_freq", eval_freq),
        ("eval_iter", eval_iter),
    ):
        if not isinstance(value, int) or value < (0 if name == "num_epochs" else 1):
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if len(train_loader) == 0:
        raise ValueError("train_classifier_simple: the training loader has no batches")
    state = _empty_history()
    if history is not None:
        missing = [key for key in state if key not in history]
        if missing:
            raise ValueError(f"history lacks {missing}; pass the dict given to on_epoch_end")
        state = {key: (list(v) if isinstance(v, list) else v) for key, v in history.items()}

    for epoch in range(start_epoch, num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch_classifier(
                input_batch, target_batch, model, device, token_position=token_position
            )
            loss.backward()
            optimizer.step()
            state["examples_seen"] += input_batch.shape[0]
            state["global_step"] += 1
            if state["global_step"] % eval_freq == 0:
                train_loss, val_loss = evaluate_model_classifier(
                    model,
                    train_loader,
                    val_loader,
                    device,
                    eval_iter,
                    token_position=token_position,
                )
                state["train_losses"].append(train_loss)
                state["val_losses"].append(val_loss)
                log(
                    f"Ep {epoch + 1} (Step {state['global_step']:06d}): "
                    f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
                )
        train_acc = calc_accuracy_loader(
            train_loader, model, device, num_batches=eval_iter, token_position=token_position
        )
        val_acc = calc_accuracy_loader(
            val_loader, model, device, num_batches=eval_iter, token_position=token_position
        )
        log(
            f"Training accuracy: {train_acc * 100:.2f}% | Validation accuracy: {val_acc * 100:.2f}%"
        )
        state["train_accs"].append(train_acc)
        state["val_accs"].append(val_acc)
        if on_epoch_end is not None:
            on_epoch_end(
                epoch, {k: (list(v) if isinstance(v, list) else v) for k, v in state.items()}
            )

    return (
        state["train_losses"],
        state["val_losses"],
        state["train_accs"],
        state["val_accs"],
        state["examples_seen"],
    )


def plot_values(
    epochs_seen: Sequence[float],
    examples_seen: Sequence[float],
    train_values: Sequence[float],
    val_values: Sequence[float],
    label: str = "loss",
    path: str | Path | None = None,
) -> Path:
    """Plot training and validation curves against epochs, with examples seen on a top axis (book §6.7).

    Writes a PNG (default `<label>-plot.png`, the book writes `<label>-plot.pdf`)
    and returns its path. Uses a bare matplotlib Figure: no window, no global state.
    """
    from matplotlib.figure import Figure

    lengths = {
        "epochs_seen": len(epochs_seen),
        "train_values": len(train_values),
        "val_values": len(val_values),
    }
    if len(set(lengths.values())) != 1 or not lengths["train_values"]:
        raise ValueError(f"plot_values needs equally long, non-empty sequences; got {lengths}")
    if len(examples_seen) != len(train_values):
        raise ValueError(
            f"examples_seen has {len(examples_seen)} points but train_values {len(train_values)}"
        )
    path = Path(path) if path is not None else Path(f"{label}-plot.png")

    def as_floats(values):
        return [float(v) for v in values]

    fig = Figure(figsize=(5, 3))
    ax1 = fig.add_subplot()
    ax1.plot(as_floats(epochs_seen), as_floats(train_values), label=f"Training {label}")
    ax1.plot(
        as_floats(epochs_seen), as_floats(val_values), linestyle="-.", label=f"Validation {label}"
    )
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel(label.capitalize())
    ax1.legend()
    ax2 = ax1.twiny()  # same curves against examples seen, drawn invisibly to align the axis
    ax2.plot(as_floats(examples_seen), as_floats(train_values), alpha=0)
    ax2.set_xlabel("Examples seen")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


# ---------------------------------------------------------------------------------------------
# §6.8: using the classifier
# ---------------------------------------------------------------------------------------------


def _context_length(model: nn.Module) -> int | None:
    pos_emb = getattr(model, "pos_emb", None)
    if isinstance(pos_emb, nn.Embedding):
        return pos_emb.num_embeddings
    cfg = getattr(model, "cfg", None)
    return cfg.get("context_length") if isinstance(cfg, dict) else None


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
    """Label a text "spam" or "not spam" with a fine-tuned classifier (book §6.8).

    The text is encoded, cut to `max_length` (at most the model's context) and padded
    with `pad_token_id` to `max_length`, as the training texts were: the classifier
    reads the last token, so it must see the same padding it was trained with.
    `max_length=None` pads nothing and only cuts to the model's context.
    """
    if not isinstance(text, str):
        raise TypeError(f"classify_review expects a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("classify_review: the text is empty; there is nothing to classify")
    context = _context_length(model)
    if max_length is not None:
        if max_length < 1:
            raise ValueError(f"max_length={max_length} must be at least 1")
        if context is not None and max_length > context:
            raise ValueError(
                f"max_length={max_length} exceeds the model's context_length {context}"
            )
    model.eval()
    input_ids = tokenizer.encode(text)
    limit = min(x for x in (max_length, context, len(input_ids)) if x is not None)
    input_ids = input_ids[:limit]
    if max_length is not None:
        input_ids += [pad_token_id] * (max_length - len(input_ids))
    input_tensor = torch.tensor(input_ids, device=device).unsqueeze(0)
    with torch.no_grad():
        logits = _token_logits(model, input_tensor, token_position)
    predicted = torch.argmax(logits, dim=-1).item()
    return "spam" if predicted == 1 else "not spam"


def save_classifier(
    model: nn.Module,
    model_dir: str | Path,
    *,
    max_length: int | None,
    pad_token_id: int = 50256,
    token_position: str = "last",
    extra: dict | None = None,
) -> Path:
    """Save a fine-tuned classifier's state_dict with a JSON of what using it needs (book §6.8).

    Writes `review_classifier.pth` (the book's `torch.save(model.state_dict(), ...)`)
    and `review_classifier.json` (model config, number of classes, padded length,
    pad token, token position, labels), each atomically. Returns the directory.
    """
    model_dir = Path(model_dir)
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, dict):
        raise TypeError(
            "save_classifier needs a GPTModel (its `cfg` is written beside the weights)"
        )
    meta = {
        "format": META_FORMAT,
        "model_config": cfg,
        "num_classes": model.out_head.out_features,
        "max_length": max_length,
        "pad_token_id": pad_token_id,
        "token_position": token_position,
        "labels": list(LABELS),
        **(extra or {}),
    }
    weights = model_dir / MODEL_FILE
    with atomic_path(weights) as tmp:
        torch.save(model.state_dict(), tmp)
    write_text_atomic(model_dir / META_FILE, json.dumps(meta, indent=2))
    return model_dir


def load_classifier(
    model_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild a classifier saved by `save_classifier`; returns `(model, meta)` in eval mode (book §6.8).

    The weights load with `weights_only=True` (no pickled code runs) and `strict=True`.
    """
    from reference.model import GPTModel

    model_dir = Path(model_dir)
    meta_path, weights = model_dir / META_FILE, model_dir / MODEL_FILE
    for path in (meta_path, weights):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: give the --model-dir that `ftkit classify train` wrote"
            )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_path} is not valid JSON: {err}") from err
    missing = [k for k in ("model_config", "num_classes", "max_length") if k not in meta]
    if missing:
        raise ValueError(f"{meta_path} lacks {missing}")
    model = GPTModel(meta["model_config"])
    add_classification_head(model, num_classes=meta["num_classes"])
    state = torch.load(weights, map_location=device, weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{weights} does not fit the config in {meta_path}: {err}") from err
    model.to(device).eval()
    return model, meta
