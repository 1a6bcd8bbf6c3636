"""Fused modules: the book's attention, LayerNorm and GELU computed by single PyTorch kernels (same parameters).

Nothing here changes a model's parameters, buffers or `state_dict` keys, so a checkpoint
saved from a fused model loads into the book's `GPTModel` and back. Only each module's
class changes, to a subclass whose forward computes the same math in fewer kernels:

- fused attention: PyTorch's `scaled_dot_product_attention` (one kernel for mask, scale,
  softmax and the weighted sum) instead of the book's explicit score matrix (§3.6);
- fused LayerNorm and GELU: `F.layer_norm` and `F.gelu(approximate="tanh")` compute the
  book's formulas (§4.2, §4.3) in one kernel each.

Everything works on any model with the book's module layout (`trf_blocks[i].att.W_query`,
...), including `llms_from_scratch.ch04.GPTModel`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_PARTS = ("W_query", "W_key", "W_value", "out_proj", "num_heads", "head_dim")


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


def fuse_model(model: nn.Module) -> nn.Module:
    """Switch `model`'s attention, LayerNorm and GELU modules to fused kernels in place; returns it."""
    use_fused_attention(model)
    return use_fused_layers(model)
