"""GPT-2 as the book builds it (ch. 4), with the book's module names and state_dict layout.

Modules are created in the book's order, so `torch.manual_seed(123); GPTModel(cfg)`
gives the book's initial weights, and a `.pth` saved by the book's code loads here
with `strict=True`.
"""

from __future__ import annotations

import torch
from torch import nn

from ftkit.presets import check_token_ids, validate_config  # kit: clear errors


class LayerNorm(nn.Module):
    """Layer normalization with learnable `scale` and `shift` (book §4.2)."""

    def __init__(self, emb_dim: int):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # GPT-2: the biased variance
        norm_x = (x - mean) / torch.sqrt(var + self.eps)
        return self.scale * norm_x + self.shift


class GELU(nn.Module):
    """GELU activation, the tanh approximation GPT-2 was trained with (book §4.3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fmt: off
        return 0.5 * x * (1 + torch.tanh(
            torch.sqrt(torch.tensor(2.0 / torch.pi)) *
            (x + 0.044715 * torch.pow(x, 3))
        ))
        # fmt: on


class FeedForward(nn.Module):
    """Two linear layers around a GELU, widening the embedding 4x in between (book §4.3)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg["emb_dim"], 4 * cfg["emb_dim"]),
            GELU(),
            nn.Linear(4 * cfg["emb_dim"], cfg["emb_dim"]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


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
        if d_out % num_heads != 0:  # kit: a clear error (the book's assert below)
            raise ValueError(f"d_out={d_out} is not divisible by num_heads={num_heads}")
        assert d_out % num_heads == 0, "d_out must be divisible by n_heads"
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        # A persistent buffer, as the book's: its checkpoints carry `att.mask`.
        self.register_buffer(
            "mask", torch.triu(torch.ones(context_length, context_length), diagonal=1)
        )

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, d_out) -> (batch, heads, tokens, head_dim)."""
        b, num_tokens, _ = x.shape
        return x.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, num_tokens, d_in = x.shape
        queries = self.split_heads(self.W_query(x))  # kit: view + transpose, as exercises/ asks
        keys = self.split_heads(self.W_key(x))  # kit:
        values = self.split_heads(self.W_value(x))  # kit:

        attn_scores = queries @ keys.transpose(2, 3)
        mask_bool = self.mask.bool()[:num_tokens, :num_tokens]
        attn_scores.masked_fill_(mask_bool, -torch.inf)  # a token may not look ahead
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        attn_weights = self.dropout(attn_weights)

        context = (  # kit: the book's context_vec, merged in one statement
            (attn_weights @ values).transpose(1, 2).contiguous().view(b, num_tokens, self.d_out)
        )
        return self.out_proj(context)  # kit:


class TransformerBlock(nn.Module):
    """Pre-norm attention and feed-forward, each with a shortcut connection (book §4.5)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=cfg["emb_dim"],
            d_out=cfg["emb_dim"],
            context_length=cfg["context_length"],
            num_heads=cfg["n_heads"],
            dropout=cfg["drop_rate"],
            qkv_bias=cfg["qkv_bias"],
        )
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # kit: the book's shortcut = x ... x = x + shortcut, in one statement per sub-layer
        x = x + self.drop_shortcut(self.att(self.norm1(x)))
        x = x + self.drop_shortcut(self.ff(self.norm2(x)))  # kit:
        return x


class GPTModel(nn.Module):
    """GPT-2: token + position embeddings, transformer blocks, final norm, output head (book §4.6)."""

    def __init__(self, cfg: dict):
        super().__init__()
        validate_config(cfg)  # kit: a clear error for a wrong config
        self.cfg = dict(cfg)  # kit: the config, for files saved beside the model
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx: torch.Tensor) -> torch.Tensor:
        check_token_ids(in_idx, self.pos_emb.num_embeddings, self.tok_emb.num_embeddings)  # kit
        batch_size, seq_len = in_idx.shape
        tok_embeds = self.tok_emb(in_idx)
        pos_embeds = self.pos_emb(torch.arange(seq_len, device=in_idx.device))
        x = tok_embeds + pos_embeds  # Shape [batch_size, num_tokens, emb_size]
        x = self.drop_emb(x)
        x = self.trf_blocks(x)
        x = self.final_norm(x)
        logits = self.out_head(x)
        return logits
