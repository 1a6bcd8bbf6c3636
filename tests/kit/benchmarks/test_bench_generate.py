"""Generation benchmarks: the book's `generate` (book §5.3) vs `ftkit.engine.kv_cache.generate_cached`.

Greedy decoding of FTKIT_BENCH_NEW_TOKENS (default 256) new tokens after the first test
entry's Alpaca prompt, on a seed-123 random-init model in eval mode. With timing disabled
(the default suite) only 16 tokens are generated: a smoke test.
"""

from __future__ import annotations

import pytest
import torch
from bench_helpers import build_model, cases, device_name, env_int

from ftkit.engine.kv_cache import generate_cached

GENERATORS = ("book", "kv-cache")


def prompt_ids(device: str) -> torch.Tensor:
    from ftkit.data.instruction import load_instruction_data
    from ftkit.io.tokenizer import get_tokenizer
    from reference.instruction_data import format_input, split_data

    _, test, _ = split_data(load_instruction_data())
    ids = get_tokenizer().encode(format_input(test[0]))
    return torch.tensor([ids], device=device)


@pytest.mark.parametrize(
    ("device", "size", "repeat", "path"),
    cases(GENERATORS, repeats=env_int("FTKIT_BENCH_GEN_REPEATS", 2)),
)
def test_generate(benchmark, device, size, repeat, path):
    from book_package import book_module

    generate = book_module("ch05").generate

    # Both paths run on the book package's model: the generator is the only difference.
    model, cfg = build_model(size, "book", device)
    model.eval()
    idx = prompt_ids(device)
    new_tokens = 16 if benchmark.disabled else env_int("FTKIT_BENCH_NEW_TOKENS", 256)
    fn = generate if path == "book" else generate_cached
    out = {}

    def run():
        out["ids"] = fn(model, idx, new_tokens, cfg["context_length"])
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=1, warmup_rounds=0)
    benchmark.extra_info.update(
        kind="generate",
        device=device,
        device_name=device_name(device),
        dtype="fp32",
        size=size,
        path=path,
        tokens_per_round=new_tokens,
        prompt_tokens=idx.shape[1],
        repeat=repeat,
        generated=out["ids"][0, idx.shape[1] :].tolist(),
    )
    assert out["ids"].shape == (1, idx.shape[1] + new_tokens)
