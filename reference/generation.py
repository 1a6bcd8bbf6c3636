"""Text generation with a GPT model: greedy decoding, temperature and top-k sampling (book §4.7, §5.1, §5.3).

`generate` matches the book's function token for token under a fixed seed: the
same operations in the same order draw the same random numbers. Generation is
always run under `torch.no_grad()` and never changes the model's train/eval mode
(call `model.eval()` first, as the book does, to turn dropout off).
"""

from __future__ import annotations

import math

import tiktoken
import torch
from torch import nn

END_OF_TEXT = "<|endoftext|>"


def text_to_token_ids(text: str, tokenizer: tiktoken.Encoding) -> torch.Tensor:
    """Encode `text` to a `(1, tokens)` tensor, allowing `<|endoftext|>` (book §5.1)."""
    if not isinstance(text, str):
        raise TypeError(f"text_to_token_ids expects a str, got {type(text).__name__}")
    encoded = tokenizer.encode(text, allowed_special={END_OF_TEXT})
    return torch.tensor(encoded, dtype=torch.long).unsqueeze(0)  # add the batch dimension


def token_ids_to_text(token_ids: torch.Tensor, tokenizer: tiktoken.Encoding) -> str:
    """Decode a `(1, tokens)` or `(tokens,)` tensor of ids back to text (book §5.1)."""
    if not isinstance(token_ids, torch.Tensor):
        token_ids = torch.as_tensor(token_ids)
    if token_ids.dim() == 2 and token_ids.shape[0] == 1:
        token_ids = token_ids.squeeze(0)  # drop the batch dimension
    if token_ids.dim() != 1:
        raise ValueError(
            "token_ids_to_text decodes one sequence: shape (1, tokens) or (tokens,), got "
            f"{tuple(token_ids.shape)}; decode each row of a batch separately"
        )
    if token_ids.is_floating_point():
        raise TypeError(f"token ids must be integers, got dtype {token_ids.dtype}")
    return tokenizer.decode(token_ids.tolist())


def _check_generation_args(
    idx: torch.Tensor,
    max_new_tokens: int,
    context_size: int,
    temperature: float = 0.0,
    top_k: int | None = None,
) -> None:
    """Raise a clear error for arguments generation cannot use."""
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(
            f"idx must be a (batch, tokens) tensor of token ids, got {shape}; "
            "add the batch dimension with idx.unsqueeze(0) (text_to_token_ids does)"
        )
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise TypeError(f"idx must hold integer token ids, got dtype {idx.dtype}")
    if idx.shape[1] == 0:
        raise ValueError("idx has no tokens: generation needs at least one context token")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 1:
        raise ValueError(f"context_size must be a positive int, got {context_size!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")


def _next_token_logits(model: nn.Module, idx: torch.Tensor, context_size: int) -> torch.Tensor:
    """Logits for the token after `idx`, seeing only its last `context_size` tokens."""
    idx_cond = idx[:, -context_size:]  # the model cannot take more than its context length
    logits = model(idx_cond)
    return logits[:, -1, :]  # only the last position predicts the next token


def _pick_next_token(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """The next token from last-position logits: top-k filter, then sample or argmax (book §5.3)."""
    if top_k is not None:
        if top_k > logits.shape[-1]:
            raise ValueError(f"top_k={top_k} exceeds the vocabulary size {logits.shape[-1]}")
        top_logits, _ = torch.topk(logits, top_k)
        min_val = top_logits[:, -1:]  # per row, the k-th largest logit
        logits = torch.where(
            logits < min_val, torch.tensor(float("-inf"), device=logits.device), logits
        )
    if temperature > 0.0:
        probs = torch.softmax(logits / temperature, dim=-1)
        return torch.multinomial(probs, num_samples=1)
    return torch.argmax(logits, dim=-1, keepdim=True)


def generate_text_simple(
    model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_size: int
) -> torch.Tensor:
    """Append `max_new_tokens` greedily chosen tokens to `idx` (book §4.7)."""
    _check_generation_args(idx, max_new_tokens, context_size)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = _next_token_logits(model, idx, context_size)
            # softmax is monotonic, so argmax of the logits picks the same token (the book shows both)
            probas = torch.softmax(logits, dim=-1)
            idx_next = torch.argmax(probas, dim=-1, keepdim=True)
            idx = torch.cat((idx, idx_next), dim=1)
    return idx


def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    context_size: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Generate up to `max_new_tokens` tokens with optional temperature and top-k sampling (book §5.3).

    temperature 0 is greedy decoding; temperature > 0 samples from
    softmax(logits / temperature) with `torch.multinomial`; `top_k` keeps only the
    k largest logits first. Generation stops early when `eos_id` is produced; that
    token is not appended (as the book). `eos_id` needs a batch of one sequence.
    """
    _check_generation_args(idx, max_new_tokens, context_size, temperature, top_k)
    if eos_id is not None and idx.shape[0] != 1:
        raise ValueError(
            f"eos_id stops generation of a single sequence (batch size 1), got a batch of "
            f"{idx.shape[0]}; generate each sequence separately"
        )
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = _next_token_logits(model, idx, context_size)
            idx_next = _pick_next_token(logits, temperature, top_k)
            if eos_id is not None and int(idx_next) == eos_id:
                break  # the book stops without appending the end-of-text token
            idx = torch.cat((idx, idx_next), dim=1)
    return idx
