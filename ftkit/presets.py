"""GPT-2's model configs (book §4.1, §5.5) and the kit's `tiny` preset, looked up by name and checked.

The book writes `BASE_CONFIG` and `model_configs` inline in §5.5 and §6.4; the kit
keeps them here, with a lookup that takes `"gpt2-small (124M)"`, `"gpt2-small"`,
`"124M"` or `"tiny"`, and the checks `reference.model.GPTModel` runs (its `# kit:`
lines) so a wrong config or input fails with a clear error instead of deep in torch.
"""

from __future__ import annotations

import torch

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


def canonical_preset(name: str) -> str:
    """The full preset name (`"355M"` -> `"gpt2-medium (355M)"`, `"tiny"` -> `"tiny"`)."""
    size = preset_size(name)  # raises a clear error for an unknown preset
    return next(full for full in MODEL_CONFIGS if preset_size(full) == size)


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
