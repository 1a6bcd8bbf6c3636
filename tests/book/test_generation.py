"""Text generation (book §4.7, §5.1, §5.3): the book's printed outputs, and token-for-token
agreement with the book's own package on a tiny random model under the same seed.
"""

from __future__ import annotations

import pytest
import torch
from book_package import book_module
from torch import nn

from ftkit.asserts import assert_equal, assert_tensor_equal
from ftkit.io.tokenizer import get_tokenizer
from ftkit.presets import get_config

book4 = book_module("ch04")
book5 = book_module("ch05")

pytestmark = pytest.mark.stage("generation")

BOOK_124M = {
    "vocab_size": 50257,
    "context_length": 1024,
    "emb_dim": 768,
    "n_heads": 12,
    "n_layers": 12,
    "drop_rate": 0.1,
    "qkv_bias": False,
}


class FixedLogits(nn.Module):
    """A stand-in model that scores every position with the same logits (the book's toy vocabulary, §5.3).

    It records the length and grad mode of each call, so tests can see what generation fed it.
    """

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.as_tensor(logits, dtype=torch.float32)
        self.seen_lengths: list[int] = []
        self.grad_enabled: list[bool] = []

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        self.seen_lengths.append(idx.shape[1])
        self.grad_enabled.append(torch.is_grad_enabled())
        # A fresh tensor each call (not a view of the one it keeps), as a real model returns:
        # a learner's in-place `logits /= temperature` must not compound across steps.
        return self.logits.expand(idx.shape[0], idx.shape[1], -1).clone()


@pytest.fixture(scope="module")
def tiny(ref):
    """A tiny random GPT (seed 123), in eval mode, with a short context to exercise cropping.

    Its vocabulary is cut to 512 tokens to keep the many generation steps fast.
    """
    torch.manual_seed(123)
    return ref.GPTModel(get_config("tiny", context_length=16, vocab_size=512)).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer()


# --- §5.1: text <-> ids ---------------------------------------------------------------------


@pytest.mark.exercise("text_to_token_ids")
def test_text_to_token_ids_adds_the_batch_dimension(impl, golden, tokenizer):
    g = golden("generation")
    ids = impl.text_to_token_ids("Every effort moves you", tokenizer=tokenizer)
    assert_tensor_equal(
        ids, g["every_effort_ids"], name="text_to_token_ids", why="shape (1, tokens) (§5.1)"
    )


@pytest.mark.exercise("text_to_token_ids")
def test_text_to_token_ids_allows_end_of_text(impl, tokenizer):
    ids = impl.text_to_token_ids("Hi<|endoftext|>", tokenizer=tokenizer)
    assert_equal(
        ids[0, -1].item(), 50256, name="last id", why="<|endoftext|> is one special token (§2.5)"
    )


@pytest.mark.exercise("token_ids_to_text")
def test_token_ids_to_text_round_trips(impl, golden, tokenizer):
    g = golden("generation")
    text = impl.token_ids_to_text(torch.tensor(g["hello_output_ids"]), tokenizer=tokenizer)
    assert_equal(text, g["hello_output_text"], name="decoded text", why="(§4.7, §5.1)")


# --- the book's printed generations of the untrained 124M model -----------------------------


@pytest.mark.exercise("generate_text_simple")
def test_untrained_gpt2_small_continues_hello_as_the_book_prints(impl, ref, golden, tokenizer):
    g = golden("generation")
    torch.manual_seed(123)
    model = ref.GPTModel(BOOK_124M).eval()
    idx = torch.tensor([g["hello_prompt_ids"]])
    out = impl.generate_text_simple(model, idx=idx, max_new_tokens=6, context_size=1024)
    why = "greedy decoding appends the argmax of the last position's logits 6 times; the model is the book's under seed 123 (§4.7)"
    assert_tensor_equal(out, g["hello_output_ids"], name="generated ids", why=why)
    assert_equal(tokenizer.decode(out[0].tolist()), g["hello_output_text"], name="text")


@pytest.mark.exercise("generate_text_simple", "text_to_token_ids", "token_ids_to_text")
@pytest.mark.slow
def test_untrained_gpt2_small_continues_every_effort_as_the_book_prints(impl, ref, golden):
    g = golden("generation")
    torch.manual_seed(123)
    model = ref.GPTModel({**BOOK_124M, "context_length": 256}).eval()
    tokenizer = get_tokenizer()
    out = impl.generate_text_simple(
        model,
        idx=impl.text_to_token_ids("Every effort moves you", tokenizer=tokenizer),
        max_new_tokens=10,
        context_size=256,
    )
    assert_equal(
        impl.token_ids_to_text(out, tokenizer=tokenizer),
        g["untrained_every_effort_text"],
        name="generated text",
        why="the book's GPT_CONFIG_124M with context_length 256, untrained (§5.1)",
    )


# --- §5.3: the toy vocabulary's logits through generate -------------------------------------


def toy_counts(impl, golden, temperature: float, top_k: int | None = None) -> list[int]:
    """Generate 1,000 tokens from the toy logits under seed 123 and count each word, as §5.3.1 does."""
    g = golden("generation")
    model = FixedLogits(g["toy_next_token_logits"])
    torch.manual_seed(123)
    out = impl.generate(
        model,
        idx=torch.zeros(1, 1, dtype=torch.long),
        max_new_tokens=1000,
        context_size=1,
        temperature=temperature,
        top_k=top_k,
    )
    return torch.bincount(out[0, 1:], minlength=len(g["toy_vocab"])).tolist()


@pytest.mark.exercise("generate")
@pytest.mark.parametrize("temperature", [1, 0.1, 5])
def test_sampling_counts_equal_the_books_at_each_temperature(impl, golden, temperature):
    g = golden("generation")
    counts = toy_counts(impl, golden, temperature)
    assert_equal(
        counts,
        g[f"toy_counts_temperature_{temperature}"],
        name=f"word counts of 1,000 samples at temperature {temperature}",
        why="softmax(logits / temperature) then torch.multinomial(probs, 1) per token, under seed "
        "123: low temperature sharpens towards 'forward', high flattens (§5.3.1)",
    )


@pytest.mark.exercise("generate")
def test_temperature_zero_is_greedy(impl, golden):
    g = golden("generation")
    counts = toy_counts(impl, golden, 0.0)
    greedy = g["toy_vocab"].index(g["toy_greedy_token"])
    assert_equal(counts[greedy], 1000, name=f"count of {g['toy_greedy_token']!r}", why="(§5.3)")


@pytest.mark.exercise("generate")
def test_top_k_samples_only_the_k_best_tokens(impl, golden):
    g = golden("generation")
    counts = toy_counts(impl, golden, 1.0, top_k=3)
    sampled = {i for i, c in enumerate(counts) if c}
    assert_equal(
        sorted(sampled),
        sorted(g["toy_top3_tokens"]),
        name="tokens sampled with top_k=3",
        why="logits below the 3rd largest become -inf, probability 0 (§5.3.2)",
    )


# --- token for token with the book's package ------------------------------------------------


def prompt() -> torch.Tensor:
    return torch.tensor([[61, 362, 100, 345]])  # ids inside the tiny model's 512-token vocabulary


@pytest.mark.exercise("generate")
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"temperature": 1.4},
        {"temperature": 1.4, "top_k": 25},
        {"temperature": 0.7, "top_k": 1},
        {"top_k": 5},
    ],
    ids=["greedy", "temperature", "temperature+top_k", "top_k=1", "greedy+top_k"],
)
def test_generate_equals_the_book_package_token_for_token(impl, tiny, kwargs):
    # 20 new tokens with context_size 6 crops the input on most steps.
    torch.manual_seed(7)
    ours = impl.generate(tiny, idx=prompt(), max_new_tokens=20, context_size=6, **kwargs)
    torch.manual_seed(7)
    theirs = book5.generate(tiny, prompt(), 20, 6, **kwargs)
    assert_tensor_equal(
        ours,
        theirs,
        name="generated ids",
        why="the same operations in the book's order draw the same random numbers (§5.3)",
    )


@pytest.mark.exercise("generate_text_simple")
def test_generate_text_simple_equals_the_book_package(impl, tiny):
    ours = impl.generate_text_simple(tiny, idx=prompt(), max_new_tokens=15, context_size=6)
    theirs = book4.generate_text_simple(tiny, prompt(), 15, 6)
    assert_tensor_equal(ours, theirs, name="generated ids", why="greedy decoding (§4.7)")


@pytest.mark.exercise("generate")
def test_eos_stops_without_appending_it_as_the_book(impl, tiny):
    greedy = impl.generate(tiny, idx=prompt(), max_new_tokens=10, context_size=6)
    eos_id = int(greedy[0, 7])  # the 4th new token
    ours = impl.generate(tiny, idx=prompt(), max_new_tokens=10, context_size=6, eos_id=eos_id)
    theirs = book5.generate(tiny, prompt(), 10, 6, eos_id=eos_id)
    assert_tensor_equal(ours, theirs, name="ids with eos_id", why="(§5.3)")
    first = next(i for i in range(4, 14) if int(greedy[0, i]) == eos_id)
    assert_tensor_equal(
        ours,
        greedy[:, :first],
        name="ids with eos_id",
        why="generation stops at the first eos_id, which is not appended (§5.3)",
    )


@pytest.mark.exercise("generate")
def test_generate_crops_to_the_last_context_size_tokens(impl, golden):
    model = FixedLogits(golden("generation")["toy_next_token_logits"])
    impl.generate(model, idx=torch.zeros(1, 3, dtype=torch.long), max_new_tokens=6, context_size=4)
    assert_equal(
        model.seen_lengths,
        [3, 4, 4, 4, 4, 4],
        name="input lengths the model saw",
        why="only the last context_size tokens fit the model's context (§4.7)",
    )


@pytest.mark.exercise("generate", "generate_text_simple")
def test_generation_runs_without_grad_and_keeps_the_models_mode(impl, golden):
    model = FixedLogits(golden("generation")["toy_next_token_logits"]).train()
    impl.generate(
        model,
        idx=torch.zeros(1, 1, dtype=torch.long),
        max_new_tokens=3,
        context_size=4,
        temperature=1.0,
    )
    impl.generate_text_simple(
        model, idx=torch.zeros(1, 1, dtype=torch.long), max_new_tokens=3, context_size=4
    )
    assert_equal(model.grad_enabled, [False] * 6, name="grad enabled during generation")
    assert model.training, "generation must not switch the model to eval mode behind the caller"


@pytest.mark.exercise("generate")
def test_zero_new_tokens_returns_the_prompt(impl, tiny):
    assert_tensor_equal(
        impl.generate(tiny, idx=prompt(), max_new_tokens=0, context_size=6), prompt(), name="ids"
    )


# --- the kit's guarantees: clear errors -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((torch.tensor([1, 2, 3]), 5, 4), {}, ValueError, r"\(batch, tokens\).*unsqueeze\(0\)"),
        ((torch.tensor([[1.0, 2.0]]), 5, 4), {}, TypeError, "integer token ids"),
        ((prompt(), -1, 4), {}, ValueError, "max_new_tokens must be >= 0, got -1"),
        ((prompt(), 5, 4), {"top_k": 0}, ValueError, "top_k must be None or an int >= 1"),
        ((prompt(), 5, 4), {"temperature": -0.5}, ValueError, "temperature must be >= 0"),
        ((prompt(), 5, 0), {}, ValueError, "context_size must be a positive int"),
        ((prompt(), 5, 4), {"top_k": 60000}, ValueError, "exceeds the vocabulary size 512"),
        ((prompt().repeat(2, 1), 5, 4), {"eos_id": 50256}, ValueError, "batch size 1"),
    ],
    ids=[
        "1-D idx",
        "float idx",
        "negative max",
        "top_k 0",
        "negative T",
        "context 0",
        "top_k>V",
        "eos batch",
    ],
)
def test_bad_generation_arguments_are_clear_errors(ref, tiny, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        ref.generate(tiny, *args, **kwargs)


def test_generate_text_simple_rejects_1d_idx(ref, tiny):
    with pytest.raises(ValueError, match=r"\(batch, tokens\)"):
        ref.generate_text_simple(tiny, torch.tensor([1, 2]), 3, 4)


def test_token_ids_to_text_rejects_a_batch(ref, tokenizer):
    with pytest.raises(ValueError, match="decode each row"):
        ref.token_ids_to_text(torch.tensor([[1, 2], [3, 4]]), tokenizer)
