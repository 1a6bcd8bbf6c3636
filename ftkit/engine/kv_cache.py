"""KV-cache decoding: the book's `generate` (§5.3) feeding only the newest token through the model each step.

`generate_cached` gives the same greedy tokens as the book's `generate`; `forward_cached`
runs the book's GPTModel layout (tok_emb, pos_emb, trf_blocks, final_norm, out_head)
on new tokens against cached keys and values, with the book's LayerNorm and GELU as
single kernels (`fused_call`) and, inside `transposed_linears`, CPU-friendly weight copies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ftkit.checks import check_generation_args, check_top_k, context_length
from ftkit.engine.fused import is_book_gelu, is_layer_norm, merge_heads, split_heads


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


def print_sample_cached(model: nn.Module, tokenizer, device, start_context: str) -> None:
    """The book's `generate_and_print_sample` (§5.2) with the KV cache: the same 50 greedy tokens."""
    from reference.generation import text_to_token_ids, token_ids_to_text

    model.eval()
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    token_ids = generate_cached(model, encoded, 50, context_length(model))
    print(token_ids_to_text(token_ids, tokenizer).replace("\n", " "))  # the book's format
    model.train()
