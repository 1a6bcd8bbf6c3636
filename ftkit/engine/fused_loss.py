"""The output head fused with the cross-entropy: the book's next-token loss (§5.1) without whole logits.

`calc_loss_batch`, `calc_loss_loader` and `evaluate_model` take the book's arguments and
give the book's values (ch. 5), computed with `_HeadCrossEntropy`: the 50,257-wide
logits are made a chunk of rows at a time, so they are never stored whole in float32,
for training and evaluation alike. A model whose head is not a plain bias-free linear
layer (LoRA's), or whose forward must run whole (an FSDP-sharded model: its root gathers
the head's weight inside its own forward), goes the book's way: logits, then
`F.cross_entropy` in float32. Under DDP the head is fused too (`next_token_loss`).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ftkit.checks import positive_int
from ftkit.engine.distributed import plain_model, sharded
from ftkit.presets import check_token_ids
from reference.collate import IGNORE_INDEX


def loss_of_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy, skipping targets of -100 (book §5.1, §7.3).

    Logits are promoted to float32 first: a bf16 softmax over 50,257 classes loses the
    small probabilities the loss depends on.
    """
    if logits.shape[:2] != targets.shape:
        raise ValueError(
            f"logits of shape {tuple(logits.shape)} do not match targets of shape "
            f"{tuple(targets.shape)}: expected (batch, tokens, vocab) and (batch, tokens)"
        )
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


HEAD_CHUNK = 128  # rows of logits at a time: 128 x 50,257 float32 = 26 MB (measured best)


class _HeadCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weight.T` (the output head, book §4.6) without whole logits.

    The 50,257-wide logits are computed `HEAD_CHUNK` rows at a time, and each chunk's
    softmax gradient (softmax - one-hot, divided by the number of counted targets) is
    formed right there, in float32, then kept in the compute dtype. Backward is then
    two matrix multiplies. The book's way holds float32 logits, their log-softmax and
    its gradient: three (tokens x 50,257) float32 arrays and as many passes over them.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, dtype, grad_enabled):
        with torch.autocast(hidden.device.type, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            counted = targets != IGNORE_INDEX
            count = counted.sum()
            safe = targets.clamp(min=0)[:, None]
            weights = counted.float() / count  # each counted target's share of the mean
            # forward always runs without grad mode: `grad_enabled` is the caller's, so that
            # evaluation under torch.no_grad() skips the softmax gradients
            need_grad = grad_enabled and any(ctx.needs_input_grad[:2])
            grads = h.new_empty((h.shape[0], w.shape[0])) if need_grad else None
            total = hidden.new_zeros((), dtype=torch.float32)
            for start in range(0, h.shape[0], HEAD_CHUNK):
                end = min(start + HEAD_CHUNK, h.shape[0])
                logits = torch.mm(h[start:end], w.t()).float()
                lse = torch.logsumexp(logits, dim=1)
                picked = logits.gather(1, safe[start:end]).squeeze(1)
                total += ((lse - picked) * counted[start:end]).sum()
                if grads is not None:
                    probs = logits.sub_(lse[:, None]).exp_()
                    probs.scatter_add_(1, safe[start:end], -counted[start:end, None].float())
                    grads[start:end] = probs.mul_(weights[start:end, None])
        ctx.save_for_backward(grads, h, w)
        ctx.hidden_dtype = hidden.dtype
        return total / count

    @staticmethod
    def backward(ctx, grad_output):
        grads, h, w = ctx.saved_tensors
        if grads is None:
            raise RuntimeError("_HeadCrossEntropy: forward ran without gradients")
        with torch.autocast(h.device.type, enabled=False):
            if float(grad_output) != 1.0:
                grads = grads * grad_output.to(grads.dtype)
            grad_hidden = grad_weight = None
            if ctx.needs_input_grad[0]:
                grad_hidden = torch.mm(grads, w).to(ctx.hidden_dtype)
            if ctx.needs_input_grad[1]:
                grad_weight = torch.mm(grads.t(), h).float()
        return grad_hidden, grad_weight, None, None, None


BOOK_GPT_PARTS = ("tok_emb", "pos_emb", "drop_emb", "trf_blocks", "final_norm", "out_head")


def has_plain_head(model: nn.Module) -> bool:
    """True for the book's GPTModel layout with a bias-free `nn.Linear` output head (book §4.6)."""
    head = getattr(model, "out_head", None)
    return (
        all(hasattr(model, part) for part in BOOK_GPT_PARTS)
        and type(head) is nn.Linear
        and head.bias is None
        and not sharded(model)  # FSDP gathers the root's parameters in its own forward: run whole
    )


@contextlib.contextmanager
def _head_lifted(model: nn.Module) -> Iterator[nn.Linear]:
    """The model's forward stops at the final norm while inside (its head is lent to the loss)."""
    head = model.out_head
    model.out_head = nn.Identity()
    try:
        yield head
    finally:
        model.out_head = head


def next_token_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The book's next-token loss (§5.1) of `model` on a batch, its head fused with the loss.

    Runs the book's GPTModel forward (§4.6) up to the final norm, then `_HeadCrossEntropy`;
    a model without a plain bias-free head (LoRA's, say) goes the book's way. Under DDP
    the wrapper's own forward runs (it prepares the gradient reduction) with the head
    lifted out, and the head's weight gets its gradient from the fused loss.
    """
    inner = plain_model(model)
    if not has_plain_head(inner):
        return loss_of_logits(model(inputs), targets)
    check_token_ids(inputs, inner.pos_emb.num_embeddings, inner.tok_emb.num_embeddings)
    if inner is not model:
        with _head_lifted(inner) as head:
            x = model(inputs)
    else:
        head = model.out_head
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        x = model.drop_emb(model.tok_emb(inputs) + model.pos_emb(positions))
        x = model.final_norm(model.trf_blocks(x))
    kind = inputs.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
    return _HeadCrossEntropy.apply(
        x.flatten(0, 1), head.weight, targets.flatten(), dtype, torch.is_grad_enabled()
    )


def calc_loss_batch(
    input_batch: torch.Tensor,
    target_batch: torch.Tensor,
    model: nn.Module,
    device: torch.device | str,
) -> torch.Tensor:
    """The book's next-token loss of a batch (book §5.1), computed the fast path's way.

    Same arguments and value as `reference.training.calc_loss_batch`; under bf16
    autocast the cross-entropy still runs in float32.
    """
    if input_batch.shape != target_batch.shape:
        raise ValueError(
            f"input_batch {tuple(input_batch.shape)} and target_batch "
            f"{tuple(target_batch.shape)} must have the same (batch, tokens) shape"
        )
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    return next_token_loss(model, input_batch, target_batch)


def calc_loss_loader(
    data_loader, model: nn.Module, device: torch.device | str, num_batches: int | None = None
) -> float:
    """The book's mean loss over the first `num_batches` batches (book §5.1), the fast path's way.

    Same arguments, capping and `nan` for an empty loader as `reference.training`'s;
    each batch's loss is `calc_loss_batch` above (the head fused with the loss, so the
    50257-wide logits are never materialised in float32 during evaluation either).
    """
    if num_batches is not None:
        positive_int(num_batches, "num_batches")
    if len(data_loader) == 0:
        return float("nan")
    count = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    losses = [
        calc_loss_batch(inputs, targets, model, device).item()
        for inputs, targets in itertools.islice(data_loader, count)
    ]
    return sum(losses) / count


def evaluate_model(
    model: nn.Module, train_loader, val_loader, device: torch.device | str, eval_iter: int
) -> tuple[float, float]:
    """The book's training and validation loss over `eval_iter` batches each (book §5.2), fast.

    In eval mode without gradients, as the book's; the model goes back to training mode.
    """
    model.eval()
    with torch.no_grad():
        losses = [
            calc_loss_loader(loader, model, device, eval_iter)
            for loader in (train_loader, val_loader)
        ]
    model.train()
    return losses[0], losses[1]
