"""The kit's one resumable trainer: the book's loops (§5.2, §6.7) with progress bars and epoch checkpoints.

`fit` runs exactly the steps of the book's `train_model_simple` (ch. 5, next-token
loss, used for SFT in §7.6) or `train_classifier_simple` (ch. 6), through the book's
own step functions (`calc_loss_batch`, `evaluate_model`, and after each epoch
`generate_and_print_sample` or `calc_accuracy_loader`), and prints the book's lines.
What it adds: a progress bar per epoch, a checkpoint after each epoch (model,
optimizer, torch RNG state, `History`) written atomically, and resuming from one with
the same losses an uninterrupted run gives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.serialization import config as serialization_config

from ftkit.checks import positive_int
from ftkit.io.files import atomic_path

if TYPE_CHECKING:
    from ftkit.engine.backend import Backend
    from ftkit.engine.distributed import Dist

Say = Callable[[str], None]
# The checkpoint format: 2 added "version" and the history's `metrics`; a file without
# "version" is format 1 (the kit before versions), which loads the same way.
CHECKPOINT_VERSION = 2


@dataclass
class History:
    """What a run has produced so far, for both chapters (book §5.2 and §6.7 return parts of it).

    `train_losses`/`val_losses`/`track_tokens_seen` grow at each evaluation,
    `train_accs`/`val_accs` after each epoch (ch. 6 only); `global_step` starts at -1
    as the book's, so the first step is 0 and is evaluated. `metrics` holds any other
    named series (a new metric goes there, so older and newer checkpoints still resume).
    """

    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    track_tokens_seen: list[int] = field(default_factory=list)
    train_accs: list[float] = field(default_factory=list)
    val_accs: list[float] = field(default_factory=list)
    tokens_seen: int = 0
    examples_seen: int = 0
    global_step: int = -1
    epochs_done: int = 0
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (lists and numbers): what a checkpoint or a JSON file stores."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """The history a checkpoint stored, from any version of the kit.

        The counters must be there (else it is not a history); a series it lacks starts
        empty, and a series this kit does not know is kept in `metrics`.
        """
        names = {f.name for f in fields(cls)}
        counters = ("tokens_seen", "examples_seen", "global_step", "epochs_done")
        missing = [k for k in counters if k not in data]
        if not isinstance(data, Mapping) or missing:
            raise ValueError(f"not a training history: missing {missing}")
        known = {k: list(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        metrics = {k: list(v) for k, v in dict(data.get("metrics") or {}).items()}
        metrics |= {k: list(v) for k, v in data.items() if k not in names}
        return cls(**{**known, "metrics": metrics})


@dataclass(frozen=True)
class Steps:
    """One chapter's step functions: the loss of a batch, the evaluation, and what follows an epoch."""

    calc_loss_batch: Callable[..., torch.Tensor]
    evaluate_model: Callable[..., tuple[float, float]]
    # (model, train_loader, val_loader, device, eval_iter, history, say) after each epoch
    after_epoch: Callable[..., None]


# ------------------------------------------------------------------ checkpoints


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    history: History,
    settings: Mapping[str, Any],
    dist: Dist | None = None,
) -> None:
    """Everything needed to continue after the last finished epoch as if never stopped (atomic).

    With `dist` every rank must call it (FSDP gathers the shards); rank 0 writes.
    """
    from ftkit.engine.distributed import one_unless

    dist = one_unless(dist)
    model_state, optimizer_state = dist.full_state(model, optimizer)
    # rank 0 writes; the file is whole before any rank goes on (and may read it)
    dist.main_writes(_write_checkpoint, path, model_state, optimizer_state, history, settings)


def _write_checkpoint(
    path: Path, model_state: dict, optimizer_state: dict, history: History, settings: Mapping
) -> None:
    state = {
        "version": CHECKPOINT_VERSION,
        "epoch": history.epochs_done - 1,  # the last finished epoch, 0-based
        "model": model_state,
        "optimizer": optimizer_state,
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "history": history.to_dict(),
        "settings": dict(settings),
    }
    # torch.load never checks the zip's CRC32s, which cost ~2 s per GB to compute: the
    # kit's own resume file goes without them (the model files users share keep them).
    with atomic_path(path) as tmp, serialization_config.patch({"save.compute_crc32": False}):
        torch.save(state, tmp)


def load_checkpoint(path: Path, settings: Mapping[str, Any], keys: Collection[str]) -> dict:
    """Read a checkpoint, refusing one written with other training settings (`keys`)."""
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings), never code to run.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which and what to do
        raise ValueError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {err}); delete it to start over"
        ) from err
    if state.get("version", 1) > CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint {path} has format {state['version']}, written by a newer ftkit "
            f"(this one reads up to {CHECKPOINT_VERSION}); upgrade ftkit, or --restart"
        )
    saved = state.get("settings", {})
    differs = {k: (saved.get(k), settings.get(k)) for k in keys if saved.get(k) != settings.get(k)}
    if differs:
        listed = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in differs.items())
        raise ValueError(
            f"checkpoint {path} was written with other settings ({listed}); rerun with the "
            "checkpoint's settings, use another --out folder, or --restart to start over "
            "(overwrites it)"
        )
    return state


def restore_checkpoint(
    state: Mapping, model: nn.Module, optimizer, dist: Dist | None = None
) -> History:
    """Put a checkpoint's model, optimizer and random state back; returns its history."""
    from ftkit.engine.distributed import one_unless

    dist = one_unless(dist)
    dist.restore(state, model, optimizer)  # DDP or FSDP shards from the full state
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return History.from_dict(state["history"])


# ------------------------------------------------------------------ interrupts


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; `message` says what is saved and what rerunning the command does."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def interrupt_message(
    epochs_done: int, num_epochs: int, checkpoint: Path | None, *, restart: bool = False
) -> str:
    """What is saved after Ctrl-C with `epochs_done` epochs finished, and what a plain rerun does.

    `restart`: the command was given `--restart`, which a rerun would repeat.
    """
    if checkpoint is None:
        return "this run writes no checkpoint, so nothing was saved; a rerun starts over"
    if epochs_done == 0:
        return (
            "no epoch of this run had finished, so no checkpoint was saved; rerunning the "
            "same command starts training from the beginning"
        )
    rerun = (
        "rerunning the same command without --restart"
        if restart
        else ("rerunning the same command")
    )
    if epochs_done >= num_epochs:
        return (
            f"all {num_epochs} epoch(s) are saved in {checkpoint}; {rerun} trains nothing "
            "more and writes the model and its files"
        )
    return (
        f"epoch {epochs_done} of {num_epochs} is saved in {checkpoint}; {rerun} continues "
        f"with epoch {epochs_done + 1}" + (" (with --restart it starts over)" if restart else "")
    )


@contextmanager
def explain_interrupt(
    history: History, num_epochs: int, checkpoint: Path | None, *, restart: bool = False
) -> Iterator[None]:
    """Turn Ctrl-C inside the block into `TrainingInterrupted`, read from `history` at that moment."""
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as err:
        message = interrupt_message(history.epochs_done, num_epochs, checkpoint, restart=restart)
        raise TrainingInterrupted(message) from err


# ------------------------------------------------------------------ the loop


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Iterable[tuple[torch.Tensor, torch.Tensor, float, Any]],
    calc_loss_batch: Callable[..., torch.Tensor],
    device: torch.device | str,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> torch.Tensor:
    """One step of the book's loop (§5.2): zero grads, loss and backward per micro-batch, update.

    `micro_batches` (from the run's strategy, `Dist.micro_batches`) yields each piece of
    the global batch this process computes with its weight in the global batch's mean
    loss and the context its backward runs in (gradient sync on the last one only). One
    piece of weight 1 is the book's step exactly; K pieces accumulate the same gradient
    (`--grad-accum K`). Returns the global batch's loss on this process (detached).
    """
    optimizer.zero_grad()  # gradients of the previous step must not add up
    total = torch.zeros((), device=device)
    for input_batch, target_batch, weight, sync in micro_batches:
        with sync:
            with autocast():
                loss = calc_loss_batch(input_batch, target_batch, model, device)
            weighted = loss if weight == 1.0 else loss * weight
            weighted.backward()
        total += weighted.detach().float()
    optimizer.step()
    return total


def fit(
    model: nn.Module,
    train_loader,
    val_loader,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    *,
    steps: Steps,
    num_epochs: int,
    eval_freq: int,
    eval_iter: int,
    history: History | None = None,
    checkpoint: Path | None = None,
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
    say: Say = print,
    dist: Dist | None = None,
    backend: Backend | None = None,
) -> History:
    """Train from `history.epochs_done` (0 for a new run) to `num_epochs`, as the book's loop (§5.2, §6.7).

    After each epoch a checkpoint goes to `checkpoint` (with `settings`) when given.
    The bar is updated by hand rather than wrapping the loader, so the loader's random
    draws, and with them the batch order, are those of a run without a bar.
    `dist` (`ftkit.engine.distributed`, default one process) says which part of each
    batch this process computes and in how many micro-batches (`--grad-accum`), sets
    the sampler to the epoch; counts are global, rank 0 shows the bar and writes.
    `backend` (`ftkit.engine.backend`) runs every forward pass (loss, evaluation,
    after-epoch step) under its autocast (bf16 on the fast path); None: float32
    (`backend_unless`).
    """
    from tqdm.auto import tqdm

    from ftkit.engine.backend import backend_unless
    from ftkit.engine.distributed import one_unless

    dist = one_unless(dist, torch.device(device))
    autocast = backend_unless(backend, device).autocast

    for value, name in (
        (num_epochs, "num_epochs"),
        (eval_freq, "eval_freq"),
        (eval_iter, "eval_iter"),
    ):
        positive_int(value, name)
    if len(train_loader) == 0:
        raise ValueError("the training loader has no batches (drop_last with too few examples?)")
    history = History() if history is None else history
    if history.epochs_done >= num_epochs:
        say(
            f"Already trained {history.epochs_done} epoch(s) (asked for {num_epochs}); nothing to train"
        )
        return history

    started = time.time()
    progress = dist.shows(progress)
    for epoch in range(history.epochs_done, num_epochs):
        model.train()
        with tqdm(
            total=len(train_loader), desc=f"epoch {epoch + 1}", unit="batch", disable=not progress
        ) as bar:
            for input_batch, target_batch in train_loader:
                pieces = dist.micro_batches(model, input_batch, target_batch)
                train_step(model, optimizer, pieces, steps.calc_loss_batch, device, autocast)
                tokens, examples = dist.seen()  # the global batch's, summed over the ranks
                history.tokens_seen += tokens
                history.examples_seen += examples
                history.global_step += 1
                bar.update()
                if history.global_step % eval_freq == 0:
                    with autocast():
                        train_loss, val_loss = steps.evaluate_model(
                            model, train_loader, val_loader, device, eval_iter
                        )
                    history.train_losses.append(train_loss)
                    history.val_losses.append(val_loss)
                    history.track_tokens_seen.append(history.tokens_seen)
                    say(
                        f"Ep {epoch + 1} (Step {history.global_step:06d}): "
                        f"Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
                    )
        with autocast():
            steps.after_epoch(model, train_loader, val_loader, device, eval_iter, history, say)
        history.epochs_done = epoch + 1
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                model=model,
                optimizer=optimizer,
                history=history,
                settings=settings or {},
                dist=dist,
            )
    say(f"Training completed in {(time.time() - started) / 60:.2f} minutes.")
    return history
