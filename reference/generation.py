"""Text generation with a GPT model: greedy decoding, temperature and top-k sampling (book §4.7, §5.1, §5.3).

`generate` matches the book's function token for token under a fixed seed: the
same operations in the same order draw the same random numbers. Generation is
always run under `torch.no_grad()` and never changes the model's train/eval mode
(call `model.eval()` first, as the book does, to turn dropout off).
"""

from __future__ import annotations

import tiktoken
import torch
from torch import nn

from ftkit.checks import check_generation_args, check_top_k  # kit: clear errors


def text_to_token_ids(text: str, tokenizer: tiktoken.Encoding) -> torch.Tensor:
    """Encode `text` to a `(1, tokens)` tensor, allowing `<|endoftext|>` (book §5.1)."""
    if not isinstance(text, str):  # kit: a clear error
        raise TypeError(f"text_to_token_ids expects a str, got {type(text).__name__}")
    encoded = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    # kit: long ids even for an empty text (the book's torch.tensor(encoded) gives float32 there)
    return torch.tensor(encoded, dtype=torch.long).unsqueeze(0)  # add the batch dimension


def token_ids_to_text(token_ids: torch.Tensor, tokenizer: tiktoken.Encoding) -> str:
    """Decode a `(1, tokens)` or `(tokens,)` tensor of ids back to text (book §5.1)."""
    if not isinstance(token_ids, torch.Tensor):  # kit: lists as well as tensors
        token_ids = torch.as_tensor(token_ids)
    if token_ids.dim() == 2 and token_ids.shape[0] == 1:  # kit: (1, tokens) or (tokens,)
        token_ids = token_ids.squeeze(0)  # drop the batch dimension
    if token_ids.dim() != 1:  # kit: clear errors
        raise ValueError(
            "token_ids_to_text decodes one sequence: shape (1, tokens) or (tokens,), got "
            f"{tuple(token_ids.shape)}; decode each row of a batch separately"
        )
    if token_ids.is_floating_point():  # kit:
        raise TypeError(f"token ids must be integers, got dtype {token_ids.dtype}")
    return tokenizer.decode(token_ids.tolist())  # kit: the book's flat = token_ids.squeeze(0)


def generate_text_simple(
    model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_size: int
) -> torch.Tensor:
    """Append `max_new_tokens` greedily chosen tokens to `idx` (book §4.7)."""
    check_generation_args(idx, max_new_tokens, context_size)  # kit: clear errors
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        with torch.no_grad():
            logits = model(idx_cond)
        logits = logits[:, -1, :]
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
    check_generation_args(idx, max_new_tokens, context_size, temperature, top_k, eos_id)  # kit
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        with torch.no_grad():
            logits = model(idx_cond)
        logits = logits[:, -1, :]

        if top_k is not None:
            check_top_k(top_k, logits.shape[-1])  # kit: a clear error for top_k > vocabulary
            top_logits, _ = torch.topk(logits, top_k)
            min_val = top_logits[:, -1:]  # kit: per row; the book's [:, -1] serves one row only
            logits = torch.where(
                logits < min_val, torch.tensor(float("-inf")).to(logits.device), logits
            )

        if temperature > 0.0:
            logits = logits / temperature
            probs = torch.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
        else:
            idx_next = torch.argmax(logits, dim=-1, keepdim=True)

        if idx_next == eos_id:
            break

        idx = torch.cat((idx, idx_next), dim=1)

    return idx
