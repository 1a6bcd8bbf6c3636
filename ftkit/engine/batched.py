"""Several inputs at a time: batched KV-cache greedy generation (book §5.3, §7.7) and classification (§6.8).

`generate_batch` answers several prompts in one batch. Prompts are left-padded to the
longest; each row keeps its own positions (0 for its first real token, as if alone) and
an attention mask hides its padding, so every row gets the greedy tokens the book's
`generate` gives for that prompt alone. A row stops at end-of-text (not appended, as
the book's `generate`) and leaves the batch, so the others go on without it.

`classify_texts` labels texts as the book's `classify_review` does, a batch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ftkit.checks import context_length, positive_int
from ftkit.choices import TOKEN_POSITIONS
from ftkit.engine.fused import merge_heads, split_heads
from ftkit.engine.kv_cache import KVCache, fused_call, generate_cached, transposed_linears

Prompt = Sequence[int]


def _attend(att: nn.Module, x: torch.Tensor, cache: KVCache, layer: int, mask: torch.Tensor):
    """The book's attention (§3.6) of new tokens to the cached ones, masked per row."""
    queries = split_heads(att, fused_call(att.W_query, x))
    keys, values = cache.append(
        layer,
        split_heads(att, fused_call(att.W_key, x)),
        split_heads(att, fused_call(att.W_value, x)),
    )
    context = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask)
    return fused_call(att.out_proj, merge_heads(context))


def _forward(model: nn.Module, idx, positions, cache: KVCache, mask) -> torch.Tensor:
    """Next-token logits of each row's last token; `mask` (rows, 1, new, cached+new) says what it sees."""
    x = model.tok_emb(idx) + model.pos_emb(positions)
    for layer, block in enumerate(model.trf_blocks):
        x = x + _attend(block.att, fused_call(block.norm1, x), cache, layer, mask)
        x = x + fused_call(block.ff, fused_call(block.norm2, x))
    cache.length += idx.shape[1]
    return fused_call(model.out_head, fused_call(model.final_norm, x[:, -1, :]))


def _generate_rows(
    model: nn.Module,
    prompts: Sequence[Prompt],
    max_new_tokens: int,
    eos_id: int | None,
    device: torch.device | str,
) -> list[list[int]]:
    """Greedy new tokens for prompts that fit the context with all their new tokens."""
    rows = len(prompts)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    longest = int(lengths.max())
    pads = longest - lengths
    fill = eos_id if eos_id is not None else 0  # never seen: masked out, positions clamped
    idx = torch.full((rows, longest), fill, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        idx[row, longest - len(prompt) :] = torch.as_tensor(prompt, device=device)
    capacity = longest + max_new_tokens
    slots = torch.arange(capacity, device=device)
    real = slots[None, :] >= pads[:, None]  # (rows, capacity): which cache slots hold a token
    # Prompt: causal among each row's real tokens; a padding query sees only itself (no NaN).
    causal = torch.ones(longest, longest, dtype=torch.bool, device=device).tril()
    mask = (causal[None] & real[:, None, :longest]) | torch.eye(
        longest, dtype=torch.bool, device=device
    )
    positions = (slots[None, :longest] - pads[:, None]).clamp(min=0)
    cache = KVCache(len(model.trf_blocks), capacity)
    new_tokens: list[list[int]] = [[] for _ in range(rows)]
    active = list(range(rows))  # original row of each batch row still generating
    with torch.no_grad(), transposed_linears():
        logits = _forward(model, idx, positions, cache, mask[:, None])
        for step in range(max_new_tokens):
            # The book's greedy pick (§5.3): argmax over the vocabulary.
            next_ids = torch.argmax(logits, dim=-1)
            picked = next_ids.tolist()
            keep = []
            for i, token in enumerate(picked):
                if eos_id is not None and token == eos_id:
                    continue  # the book's generate stops before appending end-of-text
                new_tokens[active[i]].append(token)
                keep.append(i)
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(active):  # finished rows leave the batch
                index = torch.tensor(keep, device=device)
                for layer in range(len(cache.keys)):
                    cache.keys[layer] = cache.keys[layer].index_select(0, index)
                    cache.values[layer] = cache.values[layer].index_select(0, index)
                next_ids, lengths, real = next_ids[index], lengths[index], real[index]
                active = [active[i] for i in keep]
            visible = real[:, None, None, : cache.length + 1]
            logits = _forward(model, next_ids[:, None], (lengths + step)[:, None], cache, visible)
    return new_tokens


def generate_batch(
    model: nn.Module,
    prompts: Sequence[Prompt],
    max_new_tokens: int,
    context_size: int | None = None,
    eos_id: int | None = None,
    *,
    device: torch.device | str = "cpu",
) -> list[list[int]]:
    """Each prompt followed by its greedy tokens, as the book's `generate` gives them one at a time (§5.3).

    `context_size` defaults to the model's context. A prompt that would outgrow it
    (the book then crops the window, shifting every position) is answered alone by
    `generate_cached`, which recomputes cropped windows exactly like the book.
    Call it on a model in eval mode, as the book does.
    """
    positive_int(max_new_tokens, "max_new_tokens")
    if context_size is None:
        context_size = context_length(model)
    if any(len(p) == 0 for p in prompts):
        raise ValueError("generate_batch: every prompt needs at least one token")
    fits = [i for i, p in enumerate(prompts) if len(p) + max_new_tokens <= context_size]
    results: list[list[int]] = [list(p) for p in prompts]
    if fits:
        answers = _generate_rows(model, [prompts[i] for i in fits], max_new_tokens, eos_id, device)
        for i, tokens in zip(fits, answers):
            results[i] += tokens
    for i in sorted(set(range(len(prompts))) - set(fits)):
        idx = torch.tensor([list(prompts[i])], device=device)
        results[i] = generate_cached(model, idx, max_new_tokens, context_size, eos_id=eos_id)[
            0
        ].tolist()
    return results


def classify_texts(
    texts: Sequence[str],
    model: nn.Module,
    tokenizer,
    device: torch.device | str,
    max_length: int | None = None,
    pad_token_id: int = 50256,
    *,
    token_position: str = "last",
    batch_size: int = 32,
) -> list[str]:
    """The book's `classify_review` (§6.8) for many texts, `batch_size` at a time: the same labels.

    Each text is encoded, cut and padded exactly as `classify_review` does; texts of
    one padded length share a batch (with `max_length=None` lengths differ, and padding
    would move the classified token).
    """
    positive_int(batch_size, "batch_size")
    if token_position not in TOKEN_POSITIONS:
        raise ValueError(f"token_position={token_position!r}: choose 'last' or 'first'")
    position = -1 if token_position == "last" else 0
    limit = context_length(model)
    if max_length is not None and not 1 <= max_length <= limit:
        raise ValueError(f"max_length={max_length} must lie in [1, {limit}]")
    encoded = []
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"classify_review: the text {text!r} is empty; nothing to classify")
        ids = tokenizer.encode(text)[: min(max_length or limit, limit)]
        if max_length is not None:
            ids += [pad_token_id] * (max_length - len(ids))
        encoded.append(ids)
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(i)
    labels: list[str] = [""] * len(encoded)
    model.eval()
    with torch.no_grad():
        for members in by_length.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                batch = torch.tensor([encoded[i] for i in chunk], device=device)
                predicted = model(batch)[:, position, :].argmax(dim=-1).tolist()
                for i, label in zip(chunk, predicted):
                    labels[i] = "spam" if label == 1 else "not spam"
    return labels
