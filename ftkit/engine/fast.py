"""A fast configuration of the book's GPT model and training loop: same parameters, same numbers.

Nothing here changes a model's parameters, buffers or `state_dict` keys, so a checkpoint
saved from a fast model loads into the book's `GPTModel` and back. What changes is how
the same math is computed:

- fused attention: each attention module's forward calls PyTorch's
  `scaled_dot_product_attention` (one kernel for mask, scale, softmax and the weighted
  sum) instead of the book's explicit score matrix (book §3.6 derives the same math);
- fused LayerNorm and GELU: `F.layer_norm` and `F.gelu(approximate="tanh")` compute the
  book's formulas (§4.2, §4.3) in one kernel each instead of a chain of elementwise ops;
- fused AdamW: the optimizer updates every parameter in one fused kernel instead of
  several passes over memory (the book uses `torch.optim.AdamW`, §5.2/§7.6);
- a fused head and loss: the output head and the cross-entropy run in chunks
  (`_HeadCrossEntropy`), for training and evaluation alike, so the 50257-wide logits
  are never stored whole in float32;
- bf16 autocast: matrix multiplies run in bfloat16 while the weights stay float32;
  losses agree with float32 to about 1%, not bitwise;
- a KV-cache generator: `generate_cached` gives the same greedy tokens as the book's
  `generate` (§5.3) while feeding only the newest token through the model each step.

Everything works on any model with the book's module layout (`tok_emb`, `pos_emb`,
`trf_blocks[i].att.W_query`, ...), including `llms_from_scratch.ch04.GPTModel`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ftkit.checks import check_generation_args, check_top_k, context_length, positive_int

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
ATTENTION_PARTS = ("W_query", "W_key", "W_value", "out_proj", "num_heads", "head_dim")


@dataclass(frozen=True)
class FastOptions:
    """Which speed-ups to apply; each keeps the model's parameters and state_dict as they are."""

    fused_attention: bool = True
    fused_layers: bool = True  # LayerNorm and GELU as single kernels
    fused_adamw: bool = True
    autocast: str | None = None  # "bf16" (CPU with AVX-512-BF16/AMX, Ampere+ GPUs), "fp16" or None
    compile: bool = False

    def __post_init__(self) -> None:
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(
                f"FastOptions.autocast={self.autocast!r}: choose one of "
                f"{sorted(AUTOCAST_DTYPES)} or None"
            )

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES[self.autocast] if self.autocast else None


# --- fused attention ------------------------------------------------------------------------


def is_attention(module: nn.Module) -> bool:
    """True for a module with the book's multi-head attention layout (book §3.6)."""
    return all(hasattr(module, part) for part in ATTENTION_PARTS)


def split_heads(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, d_out) -> (batch, heads, tokens, head_dim) for an attention module."""
    b, t, _ = x.shape
    return x.view(b, t, module.num_heads, module.head_dim).transpose(1, 2)


def merge_heads(context: torch.Tensor) -> torch.Tensor:
    """(batch, heads, tokens, head_dim) -> (batch, tokens, heads * head_dim)."""
    b, h, t, d = context.shape
    return context.transpose(1, 2).reshape(b, t, h * d)


class FusedAttentionMixin:
    """Causal attention through `scaled_dot_product_attention`; same weights, same result (book §3.6).

    The book masks future positions with `-inf`, scales by 1/sqrt(head_dim), applies softmax
    and dropout, then weights the values: `is_causal=True` and the default scale are exactly
    that. Dropout draws different random masks than the book's, so only dropout-free
    outputs (eval mode or drop_rate 0) are comparable number for number.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        queries = split_heads(self, self.W_query(x))
        keys = split_heads(self, self.W_key(x))
        values = split_heads(self, self.W_value(x))
        dropout_p = self.dropout.p if self.training and hasattr(self, "dropout") else 0.0
        context = causal_attention(queries, keys, values, dropout_p)
        return self.out_proj(merge_heads(context))


def causal_attention(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, dropout_p: float = 0.0
) -> torch.Tensor:
    """`scaled_dot_product_attention` with the book's causal mask, in float32 on CPU.

    On CPU the bf16 attention kernel's backward pass is several times slower than the
    float32 one at the book's sequence lengths (measured: 307 ms vs 44 ms per step at
    gpt2-small, batch 8 x 68), and attention is a small share of the FLOPs: so under CPU
    autocast the heads are computed in float32 and cast back.
    """
    dtype = queries.dtype
    if queries.device.type != "cpu" or dtype == torch.float32:
        return F.scaled_dot_product_attention(
            queries, keys, values, dropout_p=dropout_p, is_causal=True
        )
    with torch.autocast("cpu", enabled=False):
        context = F.scaled_dot_product_attention(
            queries.float(), keys.float(), values.float(), dropout_p=dropout_p, is_causal=True
        )
    return context.to(dtype)


class FusedLayerNormMixin:
    """The book's LayerNorm (biased variance, eps 1e-5, `scale`/`shift`) as one kernel (book §4.2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.scale, self.shift, self.eps)


class FusedGELUMixin:
    """The book's tanh-approximated GELU as one kernel instead of six elementwise ops (book §4.3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


def is_layer_norm(module: nn.Module) -> bool:
    """True for a module with the book's LayerNorm layout (`scale`, `shift`, `eps`)."""
    return all(hasattr(module, part) for part in ("scale", "shift", "eps"))


def is_book_gelu(module: nn.Module) -> bool:
    """True for the book's GELU module: a parameter-free module class named GELU (not torch's)."""
    return (
        type(module).__name__ == "GELU"
        and not isinstance(module, nn.GELU)
        and next(module.parameters(), None) is None
    )


_FUSED_CLASSES: dict[tuple[type, type], type] = {}


def fused_class(cls: type, mixin: type = FusedAttentionMixin) -> type:
    """A subclass of `cls` whose forward is `mixin`'s (cached, so isinstance still holds)."""
    if issubclass(cls, mixin):
        return cls
    key = (cls, mixin)
    if key not in _FUSED_CLASSES:
        _FUSED_CLASSES[key] = type(f"Fused{cls.__name__}", (mixin, cls), {})
    return _FUSED_CLASSES[key]


def use_fused_layers(model: nn.Module) -> nn.Module:
    """Switch the book's LayerNorm and GELU modules of `model` to fused kernels in place.

    Same parameters and state_dict; outputs agree with the book's to float32 rounding
    (about 1e-7 relative), not bitwise. Returns `model`.
    """
    for module in model.modules():
        if is_layer_norm(module):
            module.__class__ = fused_class(type(module), FusedLayerNormMixin)
        elif is_book_gelu(module):
            module.__class__ = fused_class(type(module), FusedGELUMixin)
    return model


def use_fused_attention(model: nn.Module) -> nn.Module:
    """Switch every attention module of `model` to fused attention in place; returns `model`.

    Only each module's class changes (to a subclass of its own class), so parameters,
    buffers (the book's `mask`) and state_dict keys are untouched.
    """
    found = 0
    for module in model.modules():
        if is_attention(module):
            module.__class__ = fused_class(type(module))
            found += 1
    if found == 0:
        raise ValueError(
            f"use_fused_attention: {type(model).__name__} has no attention module with the "
            f"book's layout ({', '.join(ATTENTION_PARTS)})"
        )
    return model


# --- optimizer, autocast, training step ------------------------------------------------------


def make_optimizer(
    model: nn.Module,
    lr: float = 5e-5,
    weight_decay: float = 0.1,
    *,
    fused: bool = True,
) -> torch.optim.Optimizer:
    """AdamW with the book's ch. 7 settings (lr 5e-5, weight decay 0.1, book §7.6), fused if asked.

    The fused kernel does the same update in one pass over each parameter; results agree
    with the book's optimizer to float32 rounding.
    """
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=fused)


def autocast_context(
    device: torch.device | str, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    """`torch.autocast` for `dtype` on `device`'s type, or a no-op when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


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


IGNORE_INDEX = -100  # cross_entropy's default, the book's padding/mask target (§7.3)
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
    )


def next_token_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The book's next-token loss (§5.1) of `model` on a batch, its head fused with the loss.

    Runs the book's GPTModel forward (§4.6) up to the final norm, then `_HeadCrossEntropy`;
    a model without a plain bias-free head (LoRA's, say) goes the book's way.
    """
    if not has_plain_head(model):
        return loss_of_logits(model(inputs), targets)
    from ftkit.presets import check_token_ids

    check_token_ids(inputs, model.pos_emb.num_embeddings, model.tok_emb.num_embeddings)
    positions = torch.arange(inputs.shape[1], device=inputs.device)
    x = model.drop_emb(model.tok_emb(inputs) + model.pos_emb(positions))
    x = model.final_norm(model.trf_blocks(x))
    kind = inputs.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
    return _HeadCrossEntropy.apply(
        x.flatten(0, 1), model.out_head.weight, targets.flatten(), dtype, torch.is_grad_enabled()
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


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """One step of the book's loop: zero grads, forward, loss, backward, update (book §5.2).

    Returns the batch loss before the update, as the book's `train_model_simple` computes it.
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast_context(inputs.device, autocast_dtype):
        loss = next_token_loss(model, inputs, targets)
    loss.backward()
    optimizer.step()
    return loss.item()


# --- the recipes' choice: the fast path (default) or the book's (--exact) --------------------

PRECISIONS = ("auto", "bf16", "fp32")


def default_precision(device: torch.device | str) -> str:
    """ "bf16" where the device computes it in hardware (CPU with AVX-512-BF16/AMX, CUDA bf16), else "fp32".

    Without hardware support bf16 is emulated and slower than float32, so "auto" never picks it.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if kind == "cpu":
        from ftkit.doctor import cpu_flags

        return "bf16" if cpu_flags() & {"avx512_bf16", "amx_bf16"} else "fp32"
    return "fp32"


def resolve_precision(precision: str, device: torch.device | str, *, exact: bool = False) -> str:
    """The number format a run trains in: "fp32" for `--exact`, else `precision` ("auto" decided here)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {list(PRECISIONS)}")
    if exact:
        if precision == "bf16":
            raise ValueError("--exact runs the book's float32 code; it cannot train in bf16")
        return "fp32"
    return default_precision(device) if precision == "auto" else precision


def make_training(
    model: nn.Module,
    params,
    device: torch.device | str,
    *,
    lr: float,
    weight_decay: float,
    exact: bool = False,
    precision: str = "fp32",
) -> tuple[torch.optim.Optimizer, torch.dtype | None]:
    """The optimizer and autocast dtype of a recipe's run: the book's AdamW, or the fast path.

    `exact` keeps the book's code (plain AdamW, float32, the model untouched). Otherwise
    the model's attention, LayerNorm and GELU switch to fused kernels in place (same
    parameters, same state_dict keys), AdamW is fused where torch has the kernel, and
    "bf16" precision returns torch.bfloat16 for `fit`'s autocast.
    """
    if exact:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay), None
    prepare_fast(model)
    fused = torch.device(device).type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    return optimizer, AUTOCAST_DTYPES.get(precision)


def prepare_fast(model: nn.Module, options: FastOptions = FastOptions()) -> nn.Module:
    """Apply `options`' model-side speed-ups to `model` (in place) and return the model to call.

    With `compile=True` the returned object is `torch.compile(model)`; its state_dict keys
    gain an `_orig_mod.` prefix, so save `model.state_dict()` (the argument), not the result's.
    """
    if options.fused_attention:
        use_fused_attention(model)
    if options.fused_layers:
        use_fused_layers(model)
    if options.compile:
        return torch.compile(model)
    return model


# --- KV-cache generation ---------------------------------------------------------------------


def _require(module: nn.Module, parts: tuple[str, ...], where: str) -> None:
    missing = [p for p in parts if not hasattr(module, p)]
    if missing:
        raise ValueError(
            f"generate_cached: {where} ({type(module).__name__}) lacks {missing}; it needs the "
            "book's GPTModel layout (tok_emb, pos_emb, trf_blocks, final_norm, out_head; blocks "
            "with norm1, att, norm2, ff)"
        )


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to `capacity`."""

    def __init__(self, n_layers: int, capacity: int):
        self.capacity = capacity
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.length = 0

    def append(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values after the cached ones; return all of them so far."""
        start, new = self.length, keys.shape[2]
        if self.keys[layer] is None:
            b, h, _, d = keys.shape
            shape = (b, h, self.capacity, d)
            self.keys[layer] = keys.new_empty(shape)
            self.values[layer] = values.new_empty(shape)
        self.keys[layer][:, :, start : start + new] = keys
        self.values[layer][:, :, start : start + new] = values
        return self.keys[layer][:, :, : start + new], self.values[layer][:, :, : start + new]


def cached_attention(att: nn.Module, x: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
    """Attention of new tokens `x` to all cached tokens plus themselves (causal), book §3.6 math."""
    queries = split_heads(att, fused_call(att.W_query, x))
    keys, values = cache.append(
        layer,
        split_heads(att, fused_call(att.W_key, x)),
        split_heads(att, fused_call(att.W_value, x)),
    )
    # Several new tokens (the prompt) attend causally; a single new token sees everything cached.
    context = F.scaled_dot_product_attention(queries, keys, values, is_causal=x.shape[1] > 1)
    return fused_call(att.out_proj, merge_heads(context))


# Inside `transposed_linears`: each plain linear layer's weight, transposed and contiguous.
_TRANSPOSED: dict[nn.Linear, torch.Tensor] | None = None


@contextlib.contextmanager
def transposed_linears() -> Iterator[None]:
    """Within the block, the generators multiply by contiguous transposed copies of the weights.

    Decoding multiplies a few rows by every weight matrix. On the CPU, BLAS streams a
    weight stored (in, out) faster than torch's (out, in) layout for `x @ Wᵀ`: measured
    on this project's 2-core Xeon (torch 2.13), gpt2-small's head takes 4.4 instead of
    5.2 ms for one row and 9.2 instead of 17.3 ms for eight, its blocks 23 instead of
    30 ms for eight. Same products and sums, so the same greedy tokens. The copies
    (the size of the weights: 0.5 GB for gpt2-small, ~0.25 s to make) are made at
    first use and freed when the outermost block ends; a weight changed meanwhile is
    copied again. `generate_batch` and the respond step open it (a batch repays the
    copies within a few dozen steps); a single short sample (`generate_cached`) does not.
    Under autocast, with gradients, or off the CPU, layers run as they are.
    """
    global _TRANSPOSED
    if _TRANSPOSED is not None:  # nested: the outer block's copies serve
        yield
        return
    _TRANSPOSED = {}
    try:
        yield
    finally:
        _TRANSPOSED = None


def linear_call(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)`, through the weight's transposed copy inside `transposed_linears` (CPU only)."""
    if _TRANSPOSED is None or type(layer) is not nn.Linear or x.device.type != "cpu":
        return layer(x)
    weight = layer.weight
    if (
        x.dtype != weight.dtype
        or torch.is_grad_enabled()
        or torch.is_autocast_enabled(x.device.type)  # autocast casts weights per call anyway
    ):
        return layer(x)
    cached = _TRANSPOSED.get(layer)
    if cached is None or cached[0] != (weight._version, weight.data_ptr()):
        cached = _TRANSPOSED[layer] = (
            (weight._version, weight.data_ptr()),
            weight.t().contiguous(),
        )
    rows = x.reshape(-1, x.shape[-1])
    out = rows @ cached[1] if layer.bias is None else torch.addmm(layer.bias, rows, cached[1])
    return out.reshape(*x.shape[:-1], out.shape[-1])


def fused_call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`module(x)` with the book's LayerNorm and GELU as single kernels (book §4.2-4.3, same math).

    Used by the generators: at one token per step the book's chains of small elementwise
    ops (mean, var, sqrt, pow, tanh, ...) cost a fifth of the step, the weights the rest.
    Linear layers go through `linear_call`. The model itself is left as it is.
    """
    if type(module) is nn.Linear:
        return linear_call(module, x)
    if is_layer_norm(module):
        return F.layer_norm(x, x.shape[-1:], module.scale, module.shift, module.eps)
    if is_book_gelu(module):
        return F.gelu(x, approximate="tanh")
    if type(module) is nn.Sequential:
        for part in module:
            x = fused_call(part, x)
        return x
    if type(module).__name__ == "FeedForward" and type(getattr(module, "layers", None)) is (
        nn.Sequential
    ):
        return fused_call(module.layers, x)  # the book's FeedForward is its `layers`
    return module(x)


def forward_cached(model: nn.Module, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits for the last of `idx`'s tokens, which follow the `cache.length` tokens cached."""
    start = cache.length
    positions = torch.arange(start, start + idx.shape[1], device=idx.device)
    x = model.tok_emb(idx) + model.pos_emb(positions)
    for layer, block in enumerate(model.trf_blocks):
        x = x + cached_attention(block.att, fused_call(block.norm1, x), cache, layer)
        x = x + fused_call(block.ff, fused_call(block.norm2, x))
    cache.length += idx.shape[1]
    return fused_call(model.out_head, fused_call(model.final_norm, x[:, -1:, :]))[:, -1, :]


def pick_next_token(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """The next token of each row from last-position logits, as the book's `generate` picks it (§5.3).

    Top-k filter, then sample at `temperature` or take the argmax: the book's operations in
    the book's order, so a seeded run draws the same random numbers.
    """
    if top_k is not None:
        check_top_k(top_k, logits.shape[-1])
        top_logits, _ = torch.topk(logits, top_k)
        min_val = top_logits[:, -1:]  # per row, the k-th largest logit
        logits = torch.where(
            logits < min_val, torch.tensor(float("-inf")).to(logits.device), logits
        )
    if temperature > 0.0:
        probs = torch.softmax(logits / temperature, dim=-1)
        return torch.multinomial(probs, num_samples=1)
    return torch.argmax(logits, dim=-1, keepdim=True)


def generate_cached(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    context_size: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """The book's `generate` (book §5.3) with a KV cache: same arguments, same greedy tokens.

    Each step feeds only the newest token and reuses every earlier token's keys and values.
    Once the text outgrows `context_size`, the book crops it to the last `context_size`
    tokens, which shifts every position; cached keys no longer apply, so from then on each
    step recomputes the cropped window in full, exactly like the book. Dropout is not
    applied (call it on a model in eval mode, as the book does). With `eos_id`, generation
    stops before appending a step's tokens if every sequence's next token is `eos_id`.
    """
    _require(model, ("tok_emb", "pos_emb", "trf_blocks", "final_norm", "out_head"), "model")
    for i, block in enumerate(model.trf_blocks):
        _require(block, ("norm1", "att", "norm2", "ff"), f"trf_blocks[{i}]")
    # The same argument checks (and messages) as the book-level `generate`.
    check_generation_args(idx, max_new_tokens, context_size, temperature, top_k)
    limit, vocab = context_length(model), model.tok_emb.num_embeddings
    if context_size > limit:
        raise ValueError(f"context_size={context_size} exceeds the model's {limit} positions")
    if top_k is not None and top_k > vocab:
        raise ValueError(f"top_k={top_k} exceeds the vocabulary size {vocab}")
    if int(idx.min()) < 0 or int(idx.max()) >= vocab:
        raise ValueError(
            f"token ids must lie in [0, {vocab}); got min {int(idx.min())}, max {int(idx.max())}"
        )

    def fresh(window: torch.Tensor) -> tuple[KVCache, torch.Tensor]:
        cache = KVCache(len(model.trf_blocks), context_size)
        return cache, forward_cached(model, window, cache)

    cache: KVCache | None = None
    with torch.no_grad():
        for _ in range(max_new_tokens):
            if cache is not None and cache.length < context_size:
                logits = forward_cached(model, idx[:, -1:], cache)
            else:
                cache, logits = fresh(idx[:, -context_size:])
            idx_next = pick_next_token(logits, temperature, top_k)
            if eos_id is not None and bool((idx_next == eos_id).all()):
                break
            idx = torch.cat((idx, idx_next), dim=1)
    return idx
