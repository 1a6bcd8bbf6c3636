"""GPT-2's BPE tokenizer, built offline from the kit's verified asset files (book §2.5, §6.5)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import ENDOFTEXT, r50k_pat_str

from ftkit.io.assets import ASSETS, fetch
from reference.collate import PAD_TOKEN_ID

N_VOCAB = 50257  # GPT-2's vocabulary: 50,000 merges + 256 byte tokens + <|endoftext|>
EOT_ID = PAD_TOKEN_ID  # "<|endoftext|>": GPT-2's end-of-text, the book's padding token (§7.3)


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set environment variable `name` for the `with` block, then restore (or unset) it."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@lru_cache(maxsize=1)
def get_tokenizer() -> tiktoken.Encoding:
    """GPT-2's tokenizer, equal to `tiktoken.get_encoding("gpt2")` but built from local files (book §2.5)."""
    vocab_bpe = fetch("gpt2-vocab-bpe")
    encoder_json = fetch("gpt2-encoder-json")
    # tiktoken would also copy local files into its own cache dir; "" turns that off.
    with _env("TIKTOKEN_CACHE_DIR", ""):
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(vocab_bpe),
            encoder_json_file=str(encoder_json),
            vocab_bpe_hash=ASSETS["gpt2-vocab-bpe"].sha256,
            encoder_json_hash=ASSETS["gpt2-encoder-json"].sha256,
        )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: EOT_ID},
        explicit_n_vocab=N_VOCAB,
    )
