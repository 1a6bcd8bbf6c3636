"""The training backend of a run, decided once: the book's code in float32, or the fast path at a precision.

`make_backend(device, exact=..., precision=...)` is the one place a run's code path is
chosen; everything that depends on that choice asks the `Backend` it returns: preparing
the model (fused modules, `ftkit.engine.fused`), the optimizer (the book's AdamW, fused
on the fast path), autocast (bf16 on the fast path where the hardware has it), the loss
and evaluation functions (the book's `reference.training`/`reference.classifier`, or the
fused head+loss of `ftkit.engine.fused_loss`), and the sample printed after each epoch
(the book's `generate`, or the KV cache of `ftkit.engine.kv_cache`). The training step
itself is `ftkit.engine.trainer.train_step`, the same for both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from ftkit.choices import PRECISIONS
from ftkit.engine.precision import AUTOCAST_DTYPES, autocast_context, default_precision
from ftkit.engine.trainer import Steps


def _same(*values: float) -> list[float]:
    return list(values)


def _itself(model: nn.Module) -> nn.Module:
    return model


@dataclass(frozen=True)
class Backend:
    """How a run computes: `exact` (the book's code, float32) or the fast path at `precision`."""

    device: torch.device
    exact: bool = False
    precision: str = "fp32"  # resolved: "fp32" or "bf16" ("auto" is decided in make_backend)

    @property
    def path(self) -> str:
        """ "exact" or "fast": what a checkpoint records and a resume compares."""
        return "exact" if self.exact else "fast"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """torch.bfloat16 for a bf16 fast run, else None (float32)."""
        return None if self.exact else AUTOCAST_DTYPES.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The block's forward passes in the run's number format (a no-op in float32)."""
        return autocast_context(self.device, self.autocast_dtype)

    def describe(self) -> str:
        """One line naming the code path and number format a run trains with."""
        if self.exact:
            return "Training path: exact (the book's code, float32)"
        kernels = "fused attention/LayerNorm/GELU, fused AdamW"
        return f"Training path: fast ({kernels}, {self.precision}); --exact for the book's code"

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model to train: moved to the device; on the fast path its modules fused (same state_dict)."""
        if not self.exact:
            from ftkit.engine.fused import fuse_model

            fuse_model(model)
        return model.to(self.device)

    def optimizer(
        self, model: nn.Module, *, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        """The book's AdamW (§5.2, §7.6) over the trainable parameters; fused on the fast path.

        Frozen parameters get no gradient, so leaving them out changes no step (§6.5, App. E).
        """
        params = [p for p in model.parameters() if p.requires_grad]
        fused = not self.exact and self.device.type in ("cpu", "cuda")
        options: dict[str, Any] = {"fused": True} if fused else {}
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **options)

    # ------------------------------------------------------------------ chapter 5/7 steps

    @property
    def calc_loss_batch(self) -> Callable[..., torch.Tensor]:
        """The book's next-token `calc_loss_batch` (§5.1), or the same loss with the fused head."""
        if self.exact:
            from reference.training import calc_loss_batch
        else:
            from ftkit.engine.fused_loss import calc_loss_batch
        return calc_loss_batch

    def calc_loss_loader(self) -> Callable[..., float]:
        """The book's `calc_loss_loader` (§5.1), or the same losses the fused head's way."""
        if self.exact:
            from reference.training import calc_loss_loader
        else:
            from ftkit.engine.fused_loss import calc_loss_loader
        return calc_loss_loader

    def next_token_steps(
        self,
        tokenizer: Any,
        start_context: str,
        *,
        mean: Callable[..., list[float]] = _same,
        plain: Callable[[nn.Module], nn.Module] = _itself,
    ) -> Steps:
        """Chapter 5's steps (next-token loss; a generated sample after each epoch, book §5.2).

        `mean` averages evaluation values over the processes of a run, `plain` gives the
        model a sample is generated with (both from the run's strategy).
        """
        if self.exact:
            from reference import training as book

            evaluate, sample = book.evaluate_model, book.generate_and_print_sample
        else:
            from ftkit.engine import fused_loss
            from ftkit.engine.fused_loss import has_plain_head
            from ftkit.engine.kv_cache import print_sample_cached
            from reference.training import generate_and_print_sample

            evaluate = fused_loss.evaluate_model

            def sample(model, tokenizer, device, start_context) -> None:
                # the KV cache runs the model's parts one by one; a sharded model runs whole
                fast = has_plain_head(model)
                (print_sample_cached if fast else generate_and_print_sample)(
                    model, tokenizer, device, start_context
                )

        def evaluate_model(*args: Any) -> tuple[float, float]:
            train_loss, val_loss = mean(*evaluate(*args))
            return train_loss, val_loss

        def after_epoch(model, _train, _val, device, _eval_iter, _history, _say) -> None:
            sample(plain(model), tokenizer, device, start_context)

        return Steps(self.calc_loss_batch, evaluate_model, after_epoch)

    # ------------------------------------------------------------------ chapter 7's responses

    def respond_steps(self, batch_size: int) -> tuple[int, Callable[..., list[str]]]:
        """How the test set is answered (§7.7): (entries per step, the function answering them).

        The book's loop answers one entry at a time with its `generate`; the fast path
        answers `batch_size` at once with a KV cache (`ftkit.engine.batched`), each entry
        getting the answer the book's loop gives it. Both generate in float32.
        """
        from ftkit.engine import respond

        if self.exact:
            return 1, respond.answer_each
        return batch_size, respond.answer_batch

    # ------------------------------------------------------------------ chapter 6 steps

    def classification_steps(
        self, token_position: str = "last", *, mean: Callable[..., list[float]] = _same
    ) -> Steps:
        """Chapter 6's steps (loss on one token's logits; accuracies after each epoch, book §6.7).

        The two-class head has no wide logits to fuse: both paths run the book's functions,
        the fast one under its autocast and with its fused modules. `token_position="first"`
        is exercise 6.3.
        """
        import reference.classifier as book

        option = {"token_position": token_position}
        evaluate = partial(book.evaluate_model, **option)

        def evaluate_model(*args: Any) -> tuple[float, float]:
            train_loss, val_loss = mean(*evaluate(*args))
            return train_loss, val_loss

        def after_epoch(model, train_loader, val_loader, device, eval_iter, history, say) -> None:
            accuracy = partial(book.calc_accuracy_loader, num_batches=eval_iter, **option)
            train_acc, val_acc = mean(
                accuracy(train_loader, model, device), accuracy(val_loader, model, device)
            )
            say(
                f"Training accuracy: {train_acc * 100:.2f}% | "
                f"Validation accuracy: {val_acc * 100:.2f}%"
            )
            history.train_accs.append(train_acc)
            history.val_accs.append(val_acc)

        return Steps(partial(book.calc_loss_batch, **option), evaluate_model, after_epoch)


def resolve_precision(precision: str, device: torch.device | str, *, exact: bool = False) -> str:
    """The number format a run trains in: "fp32" for `--exact`, else `precision` ("auto" decided here).

    "auto" is bf16 where the device computes it in hardware, else fp32
    (`ftkit.engine.precision.default_precision`); `--exact` with bf16 is a clear error.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {list(PRECISIONS)}")
    if exact:
        if precision == "bf16":
            raise ValueError("--exact runs the book's float32 code; it cannot train in bf16")
        return "fp32"
    return default_precision(device) if precision == "auto" else precision


def make_backend(
    device: torch.device | str, *, exact: bool = False, precision: str = "auto"
) -> Backend:
    """The run's backend: `exact` runs the book's code in float32, else the fast path at `precision`."""
    device = torch.device(device)
    return Backend(device, exact, resolve_precision(precision, device, exact=exact))


def backend_unless(backend: Backend | None, device: torch.device | str) -> Backend:
    """`backend` when a caller gave one, else the fast path in float32 on `device` (no autocast)."""
    return backend if backend is not None else make_backend(device, precision="fp32")
