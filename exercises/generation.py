"""Your text generation (book §4.7, §5.1, §5.3): fill in each function, then run
`pytest --impl exercises tests/book/test_generation.py`.
"""

from __future__ import annotations

import tiktoken
import torch
from torch import nn

END_OF_TEXT = "<|endoftext|>"


def text_to_token_ids(text: str, tokenizer: tiktoken.Encoding) -> torch.Tensor:
    """Encode `text` to a `(1, tokens)` tensor, allowing `<|endoftext|>` (book §5.1)."""
    raise NotImplementedError(
        "tokenizer.encode(text, allowed_special={END_OF_TEXT}), then add a batch dim with "
        "unsqueeze(0) (book §5.1)"
    )


def token_ids_to_text(token_ids: torch.Tensor, tokenizer: tiktoken.Encoding) -> str:
    """Decode a `(1, tokens)` or `(tokens,)` tensor of ids back to text (book §5.1)."""
    raise NotImplementedError(
        "remove the batch dim (squeeze(0)) and tokenizer.decode(ids.tolist()) (book §5.1)"
    )


def generate_text_simple(
    model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_size: int
) -> torch.Tensor:
    """Append `max_new_tokens` greedily chosen tokens to `idx` (book §4.7)."""
    raise NotImplementedError(
        "loop: crop idx to the last context_size tokens, logits = model(...)[:, -1, :] under "
        "torch.no_grad(), argmax(keepdim=True), torch.cat to idx (book §4.7)"
    )


def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    context_size: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Generate up to `max_new_tokens` tokens with optional temperature and top-k sampling (book §5.3)."""
    raise NotImplementedError(
        "as generate_text_simple, but: top_k -> set logits below the k-th largest to -inf; "
        "temperature > 0 -> torch.multinomial(softmax(logits / temperature), 1), else argmax; "
        "stop (without appending) when eos_id comes out (book §5.3)"
    )
