"""The fast path (`ftkit.engine.fused`, `fused_loss`, `kv_cache`) computes the book's numbers: same logits, losses, tokens.

Every check runs a tiny random-init model (seed 123) against the reference model and
loop and against the book's own package (`llms_from_scratch`), so a speed-up that
changes the math fails here, not in a benchmark table.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ftkit.asserts import assert_close, assert_equal, assert_tensor_equal
from ftkit.engine import fused, fused_loss, kv_cache
from ftkit.engine.backend import make_backend
from ftkit.engine.distributed import Dist
from ftkit.engine.trainer import train_step
from ftkit.presets import get_config
from reference.model import GPTModel
from tests.book_package import book_module

pytestmark = pytest.mark.usefixtures("one_thread")

book4 = book_module("ch04")
book5 = book_module("ch05")

WHY_SAME_MATH = (
    "scaled_dot_product_attention with is_causal=True computes the book's masked, scaled "
    "softmax attention (book §3.6); only the order of float operations may differ"
)
WHY_CACHE = (
    "a KV cache reuses earlier tokens' keys and values, which causal attention never "
    "changes (book §3.5-3.6), so greedy decoding must pick the book's tokens (book §5.3)"
)


def tiny_cfg(**overrides) -> dict:
    return get_config("tiny", **overrides)


def seeded(cls, cfg: dict) -> nn.Module:
    torch.manual_seed(123)
    return cls(cfg)


@pytest.fixture(scope="module")
def token_batch() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 50257, (2, 12))


# --- fused attention -------------------------------------------------------------------------


@pytest.mark.parametrize("model_cls", [GPTModel, book4.GPTModel], ids=["reference", "book"])
def test_fused_attention_logits_equal_the_models_own(model_cls, token_batch):
    cfg = tiny_cfg(drop_rate=0.1)
    model = seeded(model_cls, cfg).eval()  # eval: dropout off, as in the book's inference
    with torch.no_grad():
        expected = model(token_batch)
        fused.use_fused_attention(model)
        actual = model(token_batch)
    assert isinstance(model.trf_blocks[0].att, fused.FusedAttentionMixin)
    assert_tensor_equal(actual, expected, name="fused logits", why=WHY_SAME_MATH, atol=1e-5)


def test_fused_attention_without_dropout_matches_in_training_mode(token_batch):
    model = seeded(GPTModel, tiny_cfg(drop_rate=0.0)).train()
    expected = model(token_batch)
    actual = fused.use_fused_attention(model)(token_batch)
    assert_tensor_equal(actual, expected, name="fused logits (train mode)", atol=1e-5)


def test_fused_attention_keeps_state_dict_and_checkpoints_interchangeable(tmp_path, token_batch):
    model = seeded(GPTModel, tiny_cfg())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused.fuse_model(model)
    after = model.state_dict()
    assert_equal(list(after), list(before), name="state_dict keys (in order)")
    for key, value in before.items():
        assert_tensor_equal(after[key], value, name=f"state_dict[{key!r}]")

    path = tmp_path / "fast.pth"
    torch.save(model.state_dict(), path)
    plain = GPTModel(tiny_cfg())
    plain.load_state_dict(torch.load(path, weights_only=True), strict=True)
    book = book4.GPTModel(tiny_cfg())
    book.load_state_dict(torch.load(path, weights_only=True), strict=True)
    with torch.no_grad():
        expected = plain.eval()(token_batch)
        assert_tensor_equal(model.eval()(token_batch), expected, name="logits", atol=1e-5)
        assert_tensor_equal(book.eval()(token_batch), expected, name="book logits", atol=1e-5)


def test_use_fused_attention_is_idempotent_and_keeps_isinstance():
    model = seeded(GPTModel, tiny_cfg())
    fused.use_fused_attention(fused.use_fused_attention(model))
    att = model.trf_blocks[0].att
    from reference.model import MultiHeadAttention

    assert isinstance(att, MultiHeadAttention)
    assert type(att).__mro__.count(fused.FusedAttentionMixin) == 1


@pytest.mark.parametrize("model_cls", [GPTModel, book4.GPTModel], ids=["reference", "book"])
def test_fused_layer_norm_and_gelu_keep_the_books_outputs_and_state_dict(model_cls, token_batch):
    plain = seeded(model_cls, tiny_cfg())
    model = fused.use_fused_layers(copy.deepcopy(plain))
    assert isinstance(model.final_norm, fused.FusedLayerNormMixin)
    assert isinstance(model.trf_blocks[0].norm1, type(plain.trf_blocks[0].norm1))
    assert isinstance(model.trf_blocks[0].ff.layers[1], fused.FusedGELUMixin)
    assert_equal(list(model.state_dict()), list(plain.state_dict()), name="state_dict keys")
    x = torch.randn(2, 5, 64) * 3
    assert_tensor_equal(
        model.final_norm(x),
        plain.final_norm(x),
        name="LayerNorm output",
        atol=1e-5,
        why="F.layer_norm is the book's (x - mean) / sqrt(biased var + 1e-5) * scale + shift (§4.2)",
    )
    gelu, book_gelu = model.trf_blocks[0].ff.layers[1], plain.trf_blocks[0].ff.layers[1]
    assert_tensor_equal(
        gelu(x),
        book_gelu(x),
        name="GELU output",
        atol=1e-5,
        why="F.gelu(approximate='tanh') is the book's tanh approximation (§4.3)",
    )
    assert_tensor_equal(
        model.eval()(token_batch), plain.eval()(token_batch), name="logits", atol=1e-5
    )


def test_attention_under_cpu_bf16_autocast_is_computed_in_float32():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 7, 16).bfloat16() for _ in range(3))
    # The bf16 values promoted to float32, attended in float32, rounded back once.
    expected = fused.causal_attention(q.float(), k.float(), v.float()).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fused.causal_attention(q, k, v)
    assert_equal(got.dtype, torch.bfloat16, name="output dtype (the caller's)")
    assert_tensor_equal(
        got, expected, name="attention", why="computed in float32, not by the bf16 kernel"
    )


# --- training step ---------------------------------------------------------------------------


TRAIN_VOCAB = 2048  # a small vocabulary keeps the steps fast; the math is the same


def real_like_batch(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches shaped like the book's: inputs, targets shifted by one, -100 padding (book §7.3)."""
    torch.manual_seed(1)
    batches = []
    for _ in range(steps):
        tokens = torch.randint(0, TRAIN_VOCAB, (4, 17))
        inputs, targets = tokens[:, :-1].clone(), tokens[:, 1:].clone()
        targets[0, 10:] = -100
        targets[2, 5:] = -100
        batches.append((inputs, targets))
    return batches


def reference_losses(ref, model_cls, batches) -> list[float]:
    """The book's loop body (book §5.2, §7.6): plain AdamW, calc_loss_batch, backward, step."""
    model = seeded(model_cls, tiny_cfg(vocab_size=TRAIN_VOCAB)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.1)
    losses = []
    for inputs, targets in batches:
        optimizer.zero_grad()
        loss = ref.calc_loss_batch(inputs, targets, model, "cpu")
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def fast_step(model, optimizer, inputs, targets, precision="fp32", grad_accum=1) -> float:
    """The recipes' training step (`trainer.train_step`) on the fast backend."""
    backend = make_backend("cpu", precision=precision)
    pieces = Dist(grad_accum=grad_accum).micro_batches(model, inputs, targets)
    return train_step(
        model, optimizer, pieces, backend.calc_loss_batch, "cpu", backend.autocast
    ).item()


def fast_losses(batches, precision="fp32", grad_accum=1) -> list[float]:
    backend = make_backend("cpu", precision=precision)
    model = backend.prepare(seeded(GPTModel, tiny_cfg(vocab_size=TRAIN_VOCAB))).train()
    optimizer = backend.optimizer(model, lr=5e-4, weight_decay=0.1)
    return [
        fast_step(model, optimizer, inputs, targets, precision, grad_accum)
        for inputs, targets in batches
    ]


@pytest.mark.parametrize("model_cls", [GPTModel, book4.GPTModel], ids=["reference", "book"])
def test_fp32_fast_steps_give_the_books_losses(ref, model_cls):
    two = real_like_batch(2)
    batches = two + two  # steps 3-4 revisit steps 1-2's batches, so the loss must have fallen
    expected = reference_losses(ref, model_cls, batches)
    actual = fast_losses(batches)
    assert_tensor_equal(
        torch.tensor(actual),
        torch.tensor(expected),
        name="per-step losses",
        why="fused attention and fused AdamW do the book's float32 math in fewer passes",
        atol=0.0,
        rtol=1e-5,
    )
    assert expected[2] < expected[0], "the steps should train (loss falls), or the test is void"


def test_bf16_autocast_steps_stay_close_to_fp32():
    batches = real_like_batch(4)
    fp32 = fast_losses(batches)
    bf16 = fast_losses(batches, precision="bf16")
    assert_tensor_equal(
        torch.tensor(bf16),
        torch.tensor(fp32),
        name="bf16 per-step losses",
        why="bfloat16 keeps float32's range with 8 mantissa bits: losses agree to about 1%",
        atol=0.0,
        rtol=0.01,
    )
    assert bf16 != fp32, "bf16 autocast changed nothing: is autocast applied?"


def test_train_step_returns_the_loss_before_the_update(ref):
    ((inputs, targets),) = real_like_batch(1)
    model = seeded(GPTModel, tiny_cfg(vocab_size=TRAIN_VOCAB))
    before = ref.calc_loss_batch(inputs, targets, copy.deepcopy(model), "cpu").item()
    optimizer = make_backend("cpu", precision="fp32").optimizer(model, lr=5e-4, weight_decay=0.1)
    loss = fast_step(model, optimizer, inputs, targets)
    assert_close(loss, before, name="loss", atol=1e-6 * abs(before))


def test_grad_accum_uses_the_fused_loss_and_gives_the_same_losses(monkeypatch):
    batches = real_like_batch(2)
    batches = batches + batches
    whole = fast_losses(batches)
    calls = []
    real = fused_loss._HeadCrossEntropy.apply
    monkeypatch.setattr(
        fused_loss._HeadCrossEntropy, "apply", lambda *a: calls.append(1) or real(*a)
    )
    halves = fast_losses(batches, grad_accum=2)
    assert len(calls) == 2 * len(batches), "--grad-accum 2 must run the fused head+loss per half"
    assert_tensor_equal(
        torch.tensor(halves),
        torch.tensor(whole),
        name="per-step losses with --grad-accum 2",
        why="each half's mean loss weighted by its share of the counted targets is the batch's",
        atol=0.0,
        rtol=1e-5,
    )


# --- KV-cache generation ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models():
    cfg = tiny_cfg(context_length=24)
    return cfg, seeded(GPTModel, cfg).eval(), seeded(book4.GPTModel, cfg).eval()


def prompt(n: int, batch: int = 1) -> torch.Tensor:
    torch.manual_seed(7)
    return torch.randint(0, 50257, (batch, n))


@pytest.mark.parametrize(
    ("prompt_len", "new_tokens"),
    [(5, 12), (5, 30), (24, 5), (30, 6)],
    ids=["fits", "crosses-context", "starts-full", "prompt-longer-than-context"],
)
def test_generate_cached_greedy_equals_reference_and_book(ref, tiny_models, prompt_len, new_tokens):
    cfg, model, book_model = tiny_models
    idx = prompt(prompt_len)
    ctx = cfg["context_length"]
    expected = ref.generate(model, idx, new_tokens, ctx)
    assert_tensor_equal(
        kv_cache.generate_cached(model, idx, new_tokens, ctx),
        expected,
        name="greedy tokens",
        why=WHY_CACHE,
    )
    book_expected = book5.generate(book_model, idx, new_tokens, ctx)
    assert_tensor_equal(book_expected, expected, name="book's tokens (same weights)")
    assert_tensor_equal(
        kv_cache.generate_cached(book_model, idx, new_tokens, ctx),
        book_expected,
        name="greedy tokens on the book's GPTModel",
        why=WHY_CACHE,
    )


def test_generate_cached_batch_of_two(ref, tiny_models):
    cfg, model, _ = tiny_models
    idx = prompt(6, batch=2)
    expected = ref.generate(model, idx, 10, cfg["context_length"])
    actual = kv_cache.generate_cached(model, idx, 10, cfg["context_length"])
    assert_tensor_equal(actual, expected, name="greedy tokens (batch 2)", why=WHY_CACHE)


def test_generate_cached_stops_at_eos_like_the_book(ref, tiny_models):
    cfg, model, book_model = tiny_models
    idx, ctx = prompt(5), cfg["context_length"]
    full = ref.generate(model, idx, 15, ctx)[0, 5:].tolist()
    # The first token whose first occurrence is past step 0: generation must stop there.
    stop = next(i for i, tok in enumerate(full) if i > 0 and tok not in full[:i])
    eos = full[stop]
    expected = ref.generate(model, idx, 15, ctx, eos_id=eos)
    assert_equal(expected.shape[1], 5 + stop, name="reference stop position")
    assert_tensor_equal(
        kv_cache.generate_cached(model, idx, 15, ctx, eos_id=eos),
        expected,
        name="tokens up to eos",
        why="the book stops without appending eos (§7.5)",
    )
    book_tokens = book5.generate(book_model, idx, 15, ctx, eos_id=eos)
    assert_tensor_equal(
        kv_cache.generate_cached(book_model, idx, 15, ctx, eos_id=eos),
        book_tokens,
        name="tokens up to eos (book's generate)",
    )


@pytest.mark.parametrize(("temperature", "top_k"), [(1.0, None), (1.4, 25), (0.0, 3)])
def test_generate_cached_sampling_matches_reference_under_the_same_seed(
    ref, tiny_models, temperature, top_k
):
    cfg, model, _ = tiny_models
    idx, ctx = prompt(4), cfg["context_length"]
    torch.manual_seed(123)
    expected = ref.generate(model, idx, 15, ctx, temperature=temperature, top_k=top_k)
    torch.manual_seed(123)
    actual = kv_cache.generate_cached(model, idx, 15, ctx, temperature=temperature, top_k=top_k)
    assert_tensor_equal(
        actual,
        expected,
        name="sampled tokens",
        why="same probabilities and the same random draws (book §5.3)",
    )


# --- clear errors ----------------------------------------------------------------------------


def test_the_backend_decides_precision_once():
    with pytest.raises(ValueError, match=r"precision='fp8'.*bf16"):
        make_backend("cpu", precision="fp8")
    with pytest.raises(ValueError, match="cannot train in bf16"):
        make_backend("cpu", exact=True, precision="bf16")
    assert make_backend("cpu", precision="bf16").autocast_dtype is torch.bfloat16
    assert make_backend("cpu", exact=True).autocast_dtype is None
    assert make_backend("cpu", precision="fp32").autocast_dtype is None


def test_model_without_book_layout_is_refused():
    with pytest.raises(ValueError, match="no attention module with the book's layout"):
        fused.use_fused_attention(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(ValueError, match=r"model \(Linear\) lacks .*tok_emb"):
        kv_cache.generate_cached(nn.Linear(4, 4), torch.zeros(1, 3, dtype=torch.long), 2, 8)


def test_bad_generation_input_is_named(tiny_models):
    cfg, model, _ = tiny_models
    with pytest.raises(ValueError, match="no tokens"):
        kv_cache.generate_cached(model, torch.zeros(1, 0, dtype=torch.long), 3, 8)
    with pytest.raises(ValueError, match=r"\(batch, tokens\)"):
        kv_cache.generate_cached(model, torch.zeros(5, dtype=torch.long), 3, 8)
    with pytest.raises(ValueError, match="exceeds the model's 24 positions"):
        kv_cache.generate_cached(model, torch.zeros(1, 3, dtype=torch.long), 3, 1024)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 50257\)"):
        kv_cache.generate_cached(model, torch.tensor([[1, 60000]]), 3, 8)


def test_loss_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"logits of shape \(2, 3, 5\).*targets of shape \(2, 4\)"):
        fused_loss.loss_of_logits(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


# --- the output head fused with the loss --------------------------------------------------------

WHY_HEAD_LOSS = (
    "the head's logits computed a chunk of rows at a time, with the softmax gradient formed "
    "per chunk, are the book's cross-entropy (§5.1) and its gradient; only float rounding differs"
)


@pytest.mark.parametrize("chunk", [7, 128])
def test_head_loss_and_gradients_equal_the_books(monkeypatch, chunk):
    monkeypatch.setattr(fused_loss, "HEAD_CHUNK", chunk)  # 7: several chunks, one of them partial
    book = seeded(GPTModel, tiny_cfg())
    mine = copy.deepcopy(book)
    torch.manual_seed(1)
    inputs = torch.randint(0, 50257, (3, 10))
    targets = torch.randint(0, 50257, (3, 10))
    targets[0, 4:] = -100  # padding, as the book's collate (§7.3): not counted
    expected = book5.calc_loss_batch(inputs, targets, book, "cpu")
    (expected * 3).backward()  # a gradient other than 1 flows back
    actual = fused_loss.calc_loss_batch(inputs, targets, mine, "cpu")
    (actual * 3).backward()
    assert_close(actual.item(), expected.item(), name="loss", why=WHY_HEAD_LOSS, atol=1e-5)
    for (name, p), q in zip(book.named_parameters(), mine.parameters()):
        scale = p.grad.abs().max().item()
        if scale > 1e-6:  # key biases get ~0 gradients (softmax ignores a shift)
            assert_tensor_equal(q.grad / scale, p.grad / scale, name=f"{name}.grad", atol=1e-5)


def test_head_loss_under_bf16_autocast_stays_close():
    model = seeded(GPTModel, tiny_cfg())
    torch.manual_seed(1)
    inputs, targets = torch.randint(0, 50257, (2, 9)), torch.randint(0, 50257, (2, 9))
    expected = fused_loss.calc_loss_batch(inputs, targets, model, "cpu").item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual = fused_loss.calc_loss_batch(inputs, targets, model, "cpu")
    actual.backward()
    assert actual.dtype == torch.float32
    assert abs(actual.item() - expected) / expected < 0.01, (actual.item(), expected)
    assert model.out_head.weight.grad.dtype == torch.float32


def test_head_loss_falls_back_for_a_head_it_cannot_fuse():
    model = seeded(GPTModel, tiny_cfg())
    model.out_head = nn.Linear(64, 50257, bias=True)  # not the book's bias-free head
    assert not fused_loss.has_plain_head(model)
    inputs = torch.randint(0, 50257, (1, 5))
    expected = book5.calc_loss_batch(inputs, inputs, model, "cpu")
    actual = fused_loss.calc_loss_batch(inputs, inputs, model, "cpu").item()
    assert_close(actual, expected.item(), name="loss", atol=1e-5)


# --- evaluation the fast path's way ----------------------------------------------------------


def loader_of(batches: list) -> list:
    return list(batches)  # a list has len() and iterates like the book's DataLoader


@pytest.mark.parametrize("num_batches", [None, 2, 9])
def test_fast_loss_loader_equals_the_books(num_batches):
    model = seeded(GPTModel, tiny_cfg())
    torch.manual_seed(2)
    batches = [(torch.randint(0, 50257, (2, 6)), torch.randint(0, 50257, (2, 6))) for _ in range(3)]
    batches[1][1][0, 3:] = -100  # padding is not counted, as the book's collate (§7.3)
    expected = book5.calc_loss_loader(batches, model, "cpu", num_batches=num_batches)
    actual = fused_loss.calc_loss_loader(loader_of(batches), model, "cpu", num_batches=num_batches)
    assert_close(actual, expected, name="mean loss", why=WHY_HEAD_LOSS, atol=1e-5)
    assert fused_loss.calc_loss_loader([], model, "cpu") != fused_loss.calc_loss_loader(
        [], model, "cpu"
    )


def test_fast_evaluate_model_equals_the_books_and_restores_training_mode():
    model = seeded(GPTModel, tiny_cfg(drop_rate=0.5))  # dropout must be off while scoring
    torch.manual_seed(3)
    train = [(torch.randint(0, 50257, (2, 5)), torch.randint(0, 50257, (2, 5))) for _ in range(3)]
    val = [(torch.randint(0, 50257, (1, 7)), torch.randint(0, 50257, (1, 7)))]
    model.train()
    expected = book5.evaluate_model(model, train, val, "cpu", eval_iter=2)
    actual = fused_loss.evaluate_model(model, train, val, "cpu", eval_iter=2)
    assert model.training, "evaluate_model must give the model back in training mode"
    for name, a, e in zip(("train loss", "val loss"), actual, expected):
        assert_close(a, e, name=name, why=WHY_HEAD_LOSS, atol=1e-5)


# --- transposed weight copies for decoding ---------------------------------------------------


def test_transposed_linears_compute_the_layers_output_and_follow_weight_changes():
    torch.manual_seed(4)
    layer, x = nn.Linear(16, 24), torch.randn(3, 1, 16)
    with torch.no_grad():
        expected = layer(x)
        assert kv_cache._TRANSPOSED is None
        with kv_cache.transposed_linears():
            assert_tensor_equal(kv_cache.linear_call(layer, x), expected, name="output", atol=1e-6)
            assert set(kv_cache._TRANSPOSED) == {layer}, "the copy is made at first use and kept"
            layer.weight.mul_(2)  # changed in place: the stale copy must not be used
            assert_tensor_equal(kv_cache.linear_call(layer, x), layer(x), name="output", atol=1e-6)
            with kv_cache.transposed_linears():  # nested: the outer block's copies serve
                assert set(kv_cache._TRANSPOSED) == {layer}
            assert kv_cache._TRANSPOSED is not None
        assert kv_cache._TRANSPOSED is None, "the copies are freed when the outermost block ends"


class Doubled(nn.Linear):
    def forward(self, x):
        return torch.full((*x.shape[:-1], self.out_features), 2.0)


def test_transposed_linears_leave_gradients_and_other_layers_alone():
    torch.manual_seed(5)
    layer, x = nn.Linear(8, 4), torch.randn(2, 8)
    with kv_cache.transposed_linears():
        kv_cache.linear_call(layer, x).sum().backward()  # grad enabled: the layer itself runs
        assert layer.weight.grad is not None and not kv_cache._TRANSPOSED
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            assert kv_cache.linear_call(layer, x).dtype == torch.bfloat16  # autocast's own way
            assert not kv_cache._TRANSPOSED
        with torch.no_grad():  # a subclass (LoRA's, say) has its own forward: it is called
            assert torch.equal(kv_cache.linear_call(Doubled(8, 4), x), torch.full((2, 4), 2.0))
            assert not kv_cache._TRANSPOSED
