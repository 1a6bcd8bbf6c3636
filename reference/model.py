"""GPT-2 as the book builds it (ch. 4), with the book's module names and state_dict layout.

Modules are created in the book's order, so `torch.manual_seed(123); GPTModel(cfg)`
gives the book's initial weights, and a `.pth` saved by the book's code loads here
with `strict=True`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BASE_CONFIG = {
    "vocab_size": 50257,  # GPT-2's BPE vocabulary
    "context_length": 1024,
    "drop_rate": 0.0,
    "qkv_bias": True,  # OpenAI's checkpoints have query/key/value biases
}

MODEL_CONFIGS = {
    "gpt2-small (124M)": {"emb_dim": 768, "n_layers": 12, "n_heads": 12},
    "gpt2-medium (355M)": {"emb_dim": 1024, "n_layers": 24, "n_heads": 16},
    "gpt2-large (774M)": {"emb_dim": 1280, "n_layers": 36, "n_heads": 20},
    "gpt2-xl (1558M)": {"emb_dim": 1600, "n_layers": 48, "n_heads": 25},
    # Not a GPT-2: a random-init model small enough for tests and CPU runs.
    "tiny": {"emb_dim": 64, "n_layers": 2, "n_heads": 4},
}

CONFIG_KEYS = (
    "vocab_size",
    "context_length",
    "emb_dim",
    "n_heads",
    "n_layers",
    "drop_rate",
    "qkv_bias",
)


def get_config(name: str, **overrides) -> dict:
    """The full config of a preset: `"gpt2-small (124M)"`, `"gpt2-small"`, `"124M"` or `"tiny"`."""
    wanted = name.strip().lower()
    for full in MODEL_CONFIGS:
        short, _, size = full.partition(" ")
        if wanted in (full.lower(), short, size.strip("()").lower()):
            return {**BASE_CONFIG, **MODEL_CONFIGS[full], **overrides}
    raise ValueError(f"unknown model preset {name!r}; choose one of {list(MODEL_CONFIGS)}")


def preset_size(name: str) -> str:
    """The size tag of a GPT-2 preset (`"gpt2-medium (355M)"` -> `"355M"`), as the book's file names use."""
    config = get_config(name)
    for full, values in MODEL_CONFIGS.items():
        if all(config[k] == v for k, v in values.items()):
            return full.partition(" ")[2].strip("()") or full
    raise ValueError(f"no size for preset {name!r}")


def validate_config(cfg: dict) -> None:
    """Raise a clear error if a model config is incomplete or inconsistent."""
    missing = [key for key in CONFIG_KEYS if key not in cfg]
    if missing:
        raise ValueError(f"model config lacks {missing}; a full config has {list(CONFIG_KEYS)}")
    if cfg["emb_dim"] % cfg["n_heads"] != 0:
        raise ValueError(
            f"emb_dim={cfg['emb_dim']} is not divisible by n_heads={cfg['n_heads']}: "
            "each head must get an equal slice of the embedding"
        )
    if not 0.0 <= cfg["drop_rate"] < 1.0:
        raise ValueError(f"drop_rate={cfg['drop_rate']} must be in [0, 1)")


class LayerNorm(nn.Module):
    """Layer normalization with learnable `scale` and `shift` (book §4.2)."""

    def __init__(self, emb_dim: int):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(
            dim=-1, keepdim=True, unbiased=False
        )  # GPT-2 normalizes with the biased variance
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class GELU(nn.Module):
    """GELU activation, the tanh approximation GPT-2 was trained with (book §4.3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The constant is rounded to float32 first, as the book's code does, so outputs match bitwise.
        coeff = torch.sqrt(torch.tensor(2.0 / math.pi))
        return 0.5 * x * (1 + torch.tanh(coeff * (x + 0.044715 * torch.pow(x, 3))))


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
        if d_out % num_heads != 0:
            raise ValueError(f"d_out={d_out} is not divisible by num_heads={num_heads}")
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
        b, num_tokens, _ = x.shape
        queries = self.split_heads(self.W_query(x))
        keys = self.split_heads(self.W_key(x))
        values = self.split_heads(self.W_value(x))

        attn_scores = queries @ keys.transpose(2, 3)
        mask_bool = self.mask.bool()[:num_tokens, :num_tokens]
        attn_scores.masked_fill_(mask_bool, -torch.inf)  # a token may not look ahead
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        attn_weights = self.dropout(attn_weights)

        context = (
            (attn_weights @ values).transpose(1, 2).contiguous().view(b, num_tokens, self.d_out)
        )
        return self.out_proj(context)


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
        x = x + self.drop_shortcut(self.att(self.norm1(x)))
        x = x + self.drop_shortcut(self.ff(self.norm2(x)))
        return x


class GPTModel(nn.Module):
    """GPT-2: token + position embeddings, transformer blocks, final norm, output head (book §4.6)."""

    def __init__(self, cfg: dict):
        super().__init__()
        validate_config(cfg)
        self.cfg = dict(cfg)
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx: torch.Tensor) -> torch.Tensor:
        check_token_ids(in_idx, self.pos_emb.num_embeddings, self.tok_emb.num_embeddings)
        _, seq_len = in_idx.shape
        tok_embeds = self.tok_emb(in_idx)
        pos_embeds = self.pos_emb(torch.arange(seq_len, device=in_idx.device))
        x = self.drop_emb(tok_embeds + pos_embeds)
        x = self.trf_blocks(x)
        x = self.final_norm(x)
        return self.out_head(x)


def check_token_ids(in_idx: torch.Tensor, context_length: int, vocab_size: int) -> None:
    """Raise a clear error for input a GPT model cannot embed (instead of an index error deep in torch)."""
    if not isinstance(in_idx, torch.Tensor) or in_idx.dim() != 2:
        shape = tuple(in_idx.shape) if isinstance(in_idx, torch.Tensor) else type(in_idx).__name__
        raise ValueError(f"GPTModel expects token ids of shape (batch, tokens), got {shape}")
    if in_idx.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"GPTModel expects integer token ids, got dtype {in_idx.dtype}")
    if in_idx.shape[1] > context_length:
        raise ValueError(
            f"input has {in_idx.shape[1]} tokens but the model's context_length is "
            f"{context_length}; crop it, e.g. idx[:, -{context_length}:]"
        )
    if in_idx.numel() and (int(in_idx.min()) < 0 or int(in_idx.max()) >= vocab_size):
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}); got min {int(in_idx.min())}, "
            f"max {int(in_idx.max())}"
        )
