"""Your GPT-2 (book ch. 3-4): fill in each class, then run `pytest --impl exercises tests/book/test_model.py`.

The config helpers (`get_config`, `validate_config`, `check_token_ids`, the presets)
are the kit's tooling, not exercises: they are re-exported from `ftkit.presets`
so your model can use them. Create the submodules in the order the book does, so
that `torch.manual_seed(123)` gives the book's initial weights.
"""

from __future__ import annotations

import math  # noqa: F401  (GELU's constant sqrt(2/pi))

import torch
from torch import nn

from ftkit.presets import (  # noqa: F401  (tooling the learner's model may use)
    BASE_CONFIG,
    CONFIG_KEYS,
    MODEL_CONFIGS,
    check_token_ids,
    get_config,
    preset_size,
    validate_config,
)


class LayerNorm(nn.Module):
    """Layer normalization with learnable `scale` and `shift` (book §4.2)."""

    def __init__(self, emb_dim: int):
        super().__init__()
        raise NotImplementedError(
            "store eps=1e-5 and parameters scale=ones(emb_dim), shift=zeros(emb_dim) (book §4.2)"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "normalize over the last dim with the biased variance (unbiased=False), "
            "then scale and shift (book §4.2)"
        )


class GELU(nn.Module):
    """GELU activation, the tanh approximation GPT-2 was trained with (book §4.3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))) (book §4.3)"
        )


class FeedForward(nn.Module):
    """Two linear layers around a GELU, widening the embedding 4x in between (book §4.3)."""

    def __init__(self, cfg: dict):
        super().__init__()
        raise NotImplementedError(
            "self.layers = nn.Sequential(Linear(emb, 4*emb), GELU(), Linear(4*emb, emb)) (book §4.3)"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("pass x through self.layers (book §4.3)")


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention with dropout on the attention weights (book §3.6)."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float,
        num_heads: int,
        qkv_bias: bool = False,
    ):
        super().__init__()
        raise NotImplementedError(
            "create W_query, W_key, W_value (bias=qkv_bias), out_proj, dropout and the "
            "buffer 'mask' = triu(ones(context_length, context_length), diagonal=1) (book §3.6)"
        )

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, d_out) -> (batch, heads, tokens, head_dim)."""
        raise NotImplementedError(
            "view as (b, tokens, num_heads, head_dim), then transpose(1, 2) (book §3.6)"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "scores = q @ k^T, mask future positions with -inf, softmax(scores / sqrt(head_dim)), "
            "dropout, @ v, merge heads, out_proj (book §3.6)"
        )


class TransformerBlock(nn.Module):
    """Pre-norm attention and feed-forward, each with a shortcut connection (book §4.5)."""

    def __init__(self, cfg: dict):
        super().__init__()
        raise NotImplementedError(
            "create att (MultiHeadAttention), ff, norm1, norm2 and drop_shortcut, in that order "
            "(book §4.5)"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "x = x + drop(att(norm1(x))); x = x + drop(ff(norm2(x))) (book §4.5)"
        )


class GPTModel(nn.Module):
    """GPT-2: token + position embeddings, transformer blocks, final norm, output head (book §4.6)."""

    def __init__(self, cfg: dict):
        super().__init__()
        raise NotImplementedError(
            "validate_config(cfg), then tok_emb, pos_emb, drop_emb, trf_blocks (nn.Sequential), "
            "final_norm, out_head (bias=False) (book §4.6)"
        )

    def forward(self, in_idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "embed tokens + positions (torch.arange), dropout, blocks, final norm, out_head "
            "(book §4.6)"
        )
