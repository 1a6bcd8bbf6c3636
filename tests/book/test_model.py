"""GPT-2 as the book builds it (ch. 3-4): shapes, parameter counts, the book's weights and logits.

Tests use `impl.X` for the class they check, so `--impl exercises` tests the
learner's model. Most run on small configs; the book's printed logits (§4.6) need
the real 124M shape, built once (about a second on CPU).
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from book_package import book_module

from ftkit.asserts import assert_close, assert_equal, assert_tensor_equal
from ftkit.diagnose import annotate, diagnose_model
from ftkit.io.tokenizer import get_tokenizer
from ftkit.presets import get_config

pytestmark = pytest.mark.stage("model")

book = book_module("ch04")


def small_config(ref, **overrides) -> dict:
    """A model too small to matter for speed, with GPT-2's real vocabulary."""
    return get_config("tiny", **{"context_length": 32, **overrides})


def build(cls, cfg: dict, seed: int = 123) -> torch.nn.Module:
    torch.manual_seed(seed)
    return cls(cfg)


@contextmanager
def diagnosed(
    make_impl, make_ref, inputs, *, seeded: bool = False, init_why: str | None = None, quick=None
):
    """On a failed comparison, say which submodule first computes something else (ftkit.diagnose).

    `seeded`: the test compares seeded initial weights, so an init-order difference is a cause.
    `quick`: factories of smaller models to try first (see `diagnose_model`).
    """
    try:
        yield
    except (AssertionError, RuntimeError) as err:
        if isinstance(err, NotImplementedError):  # a stub: the plugin reports "not started"
            raise
        try:
            found = diagnose_model(make_impl, make_ref, inputs, quick=quick)
        except Exception as failure:  # the diagnosis must never hide the test's own failure
            raise AssertionError(f"{err}\n(diagnosis failed: {failure!r})") from err
        if not seeded and found.init_order:
            raise
        raise AssertionError(annotate(err, found, init_why=init_why if seeded else None)) from None


# --- §4.1/§4.6: the book's batch, shapes and printed logits --------------------------------


@pytest.mark.exercise("GPTModel")
def test_book_batch_gives_logits_of_shape_batch_tokens_vocab(impl, ref, golden):
    g = golden("model")
    batch = torch.tensor(g["batch_ids"])
    model = build(impl.GPTModel, small_config(ref)).eval()
    logits = model(batch)
    assert_equal(
        list(logits.shape),
        g["logits_shape"],
        name="GPTModel(batch).shape",
        why="one row of next-token scores over the 50,257-token vocabulary per input token (§4.1)",
    )


def test_book_batch_token_ids(golden):
    g = golden("model")
    tokenizer = get_tokenizer()
    ids = [tokenizer.encode(text) for text in g["batch_texts"]]
    assert_equal(ids, g["batch_ids"], name="encoded batch", why="GPT-2's BPE tokenizer (§4.1)")


@pytest.mark.exercise("GPTModel")
def test_gpt2_small_logits_equal_the_books_printout(impl, ref, golden):
    g = golden("model")
    cfg = g["book_config_124m"]
    model = build(impl.GPTModel, cfg)  # left in training mode: the book's printout has dropout on
    batch = torch.tensor(g["batch_ids"])
    with torch.no_grad():
        logits = model(batch)
    why = (
        "with torch.manual_seed(123) the book's GPTModel creates its layers in a fixed order "
        "(tok_emb, pos_emb, blocks: att W_query/W_key/W_value/out_proj, ff, norms; final_norm, "
        "out_head), so the same order gives the same weights and logits (§4.6)"
    )
    del model  # the diagnosis builds its own pair
    # Diagnosed first on 2 layers and an 8192-token vocabulary (fast); the 124M decides the rest.
    # The init-order `why` is shown only when the diagnosis finds the computation the book's.
    small = {**cfg, "n_layers": 2, "vocab_size": 8192}
    quick = (lambda: impl.GPTModel(small), lambda: ref.GPTModel(small))
    with diagnosed(
        lambda: impl.GPTModel(cfg),
        lambda: ref.GPTModel(cfg),
        [batch],
        seeded=True,
        init_why=why,
        quick=quick,
    ):
        assert_tensor_equal(
            logits[:, :, :3], g["logits_first3"], name="logits[:, :, :3]", atol=6e-5
        )
        assert_tensor_equal(
            logits[:, :, -3:], g["logits_last3"], name="logits[:, :, -3:]", atol=6e-5
        )


@pytest.mark.exercise("GPTModel")
def test_gpt2_small_parameter_counts_as_the_book_prints(impl, golden):
    g = golden("model")
    with torch.device("meta"):  # shapes only: no memory, no time
        model = impl.GPTModel(g["book_config_124m"])
    total = sum(p.numel() for p in model.parameters())
    assert_equal(
        total,
        g["total_params"],
        name="total parameters",
        why="124M + the output head's 50,257 x 768 weights, untied from tok_emb (§4.6)",
    )
    without_head = total - sum(p.numel() for p in model.out_head.parameters())
    assert_equal(
        without_head,
        g["params_with_weight_tying"],
        name="parameters without out_head",
        why="GPT-2 ties out_head to tok_emb, hence the name 124M (§4.6)",
    )
    assert_close(
        total * 4 / 1024**2,
        g["model_size_mb"],
        name="size in MB (float32)",
        atol=0.005,
        why="4 bytes per float32 parameter (§4.6)",
    )


# --- interchangeable with the book's own package --------------------------------------------


@pytest.mark.exercise("GPTModel")
@pytest.mark.parametrize("qkv_bias", [False, True])
def test_state_dict_keys_and_shapes_equal_the_book_packages(impl, ref, qkv_bias):
    cfg = small_config(ref, qkv_bias=qkv_bias)
    ours = build(impl.GPTModel, cfg).state_dict()
    theirs = build(book.GPTModel, cfg).state_dict()
    assert_equal(
        list(ours),
        list(theirs),
        name="state_dict keys",
        why="the book's checkpoints (model.pth) must load into this model by name (§5.4)",
    )
    for key in theirs:
        assert_equal(list(ours[key].shape), list(theirs[key].shape), name=f"{key}.shape")


@pytest.mark.exercise("GPTModel")
def test_state_dicts_load_strictly_both_ways(impl, ref):
    cfg = small_config(ref)
    ours, theirs = build(impl.GPTModel, cfg, seed=1), build(book.GPTModel, cfg, seed=2)
    ours.load_state_dict(build(book.GPTModel, cfg, seed=3).state_dict(), strict=True)
    theirs.load_state_dict(build(impl.GPTModel, cfg, seed=4).state_dict(), strict=True)
    batch = torch.tensor([[6109, 3626, 6100, 345]])
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    with diagnosed(lambda: impl.GPTModel(cfg), lambda: ref.GPTModel(cfg), [batch]):
        assert_tensor_equal(
            ours(batch),
            theirs(batch),
            name="logits after loading the book model's weights",
            atol=1e-5,
            why="same weights, same computation (§4.6)",
        )


@pytest.mark.exercise("GPTModel")
@pytest.mark.parametrize("qkv_bias", [False, True])
def test_initial_weights_under_seed_123_equal_the_book_packages(impl, ref, qkv_bias):
    cfg = small_config(ref, qkv_bias=qkv_bias)
    ours = build(impl.GPTModel, cfg).state_dict()
    theirs = build(book.GPTModel, cfg).state_dict()
    for key, value in theirs.items():
        assert_tensor_equal(
            ours[key],
            value,
            name=key,
            why="create the submodules in the book's order: each draws its initial "
            "weights from the global RNG in turn (§4.6)",
        )


# --- the parts ----------------------------------------------------------------------------


@pytest.mark.exercise("LayerNorm")
def test_layernorm_gives_mean_0_and_variance_1(impl):
    torch.manual_seed(123)
    batch_example = torch.randn(2, 5)  # the book's example (§4.2)
    out = impl.LayerNorm(emb_dim=5)(batch_example)
    why = "layer norm centres each row and scales it to unit (biased) variance (§4.2)"
    assert_tensor_equal(out.mean(dim=-1), torch.zeros(2), name="mean", atol=1e-6, why=why)
    assert_tensor_equal(
        out.var(dim=-1, unbiased=False), torch.ones(2), name="variance", atol=1e-4, why=why
    )


@pytest.mark.exercise("LayerNorm")
def test_layernorm_scale_and_shift_are_learnable_parameters(impl):
    ln = impl.LayerNorm(emb_dim=5)
    names = dict(ln.named_parameters())
    assert_equal(sorted(names), ["scale", "shift"], name="LayerNorm parameters")
    with torch.no_grad():
        ln.scale.fill_(2.0)
        ln.shift.fill_(3.0)
    out = ln(torch.randn(3, 5))
    assert_tensor_equal(
        out.mean(dim=-1), torch.full((3,), 3.0), name="mean after shift 3", atol=1e-5
    )
    assert_tensor_equal(
        out.var(dim=-1, unbiased=False),
        torch.full((3,), 4.0),
        name="variance after scale 2",
        atol=1e-3,
        why="scale multiplies the normalised values: self.scale * norm + self.shift (§4.2)",
    )


@pytest.mark.exercise("GELU")
def test_gelu_equals_torch_tanh_approximation(impl):
    x = torch.linspace(-6, 6, 241)
    assert_tensor_equal(
        impl.GELU()(x),
        torch.nn.functional.gelu(x, approximate="tanh"),
        name="GELU(x)",
        atol=1e-6,
        why="GPT-2 uses the tanh approximation of GELU: "
        "0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3))) (§4.3)",
    )


@pytest.mark.exercise("FeedForward")
def test_feedforward_keeps_the_shape_and_widens_4x(impl, ref):
    cfg = small_config(ref)
    ff = impl.FeedForward(cfg)
    x = torch.rand(2, 3, cfg["emb_dim"])
    assert_equal(list(ff(x).shape), [2, 3, cfg["emb_dim"]], name="FeedForward(x).shape")
    hidden = [m.out_features for m in ff.modules() if isinstance(m, torch.nn.Linear)]
    assert_equal(hidden, [4 * cfg["emb_dim"], cfg["emb_dim"]], name="Linear out_features")


@pytest.mark.exercise("TransformerBlock")
def test_transformer_block_keeps_the_shape(impl, ref):
    cfg = small_config(ref)
    block = impl.TransformerBlock(cfg)
    x = torch.rand(2, 4, cfg["emb_dim"])
    with diagnosed(lambda: impl.TransformerBlock(cfg), lambda: ref.TransformerBlock(cfg), [x]):
        assert_equal(list(block(x).shape), [2, 4, cfg["emb_dim"]], name="TransformerBlock(x).shape")


@pytest.mark.exercise("MultiHeadAttention")
def test_attention_is_causal(impl, ref):
    torch.manual_seed(123)
    kwargs = {"d_in": 8, "d_out": 8, "context_length": 6, "dropout": 0.0, "num_heads": 2}
    mha = impl.MultiHeadAttention(**kwargs, qkv_bias=False)
    x = torch.rand(1, 6, 8)
    changed = x.clone()
    changed[0, 4:] = torch.rand(2, 8)
    why = "the causal mask hides later tokens, so changing token 4 never changes outputs 0-3 (§3.5)"
    make = (lambda: impl.MultiHeadAttention(**kwargs), lambda: ref.MultiHeadAttention(**kwargs))
    with diagnosed(*make, [x]):
        assert_tensor_equal(mha(changed)[0, :4], mha(x)[0, :4], name="outputs 0-3", why=why)


@pytest.mark.exercise("GPTModel")
def test_model_is_causal_changing_a_later_token_keeps_earlier_logits(impl, ref):
    model = build(impl.GPTModel, small_config(ref)).eval()
    ids = torch.tensor([[6109, 3626, 6100, 345, 11, 290]])
    changed = ids.clone()
    changed[0, 3] = 50256
    with torch.no_grad():
        before, after = model(ids), model(changed)
    cfg = small_config(ref)
    with diagnosed(lambda: impl.GPTModel(cfg), lambda: ref.GPTModel(cfg), [ids]):
        assert_tensor_equal(
            after[0, :3],
            before[0, :3],
            name="logits of tokens 0-2",
            why="a token may only attend to itself and earlier tokens (§3.5)",
        )
    assert not torch.equal(after[0, 3:], before[0, 3:]), "logits from token 3 on ignore the change"


@pytest.mark.exercise("GPTModel")
def test_dropout_is_off_in_eval_mode(impl, ref):
    model = build(impl.GPTModel, small_config(ref, drop_rate=0.5))
    ids = torch.tensor([[6109, 3626, 6100, 345]])
    with torch.no_grad():
        model.train()
        torch.manual_seed(1)
        a = model(ids)
        torch.manual_seed(2)
        b = model(ids)
        assert not torch.equal(a, b), "training mode with drop_rate=0.5 should drop at random"
        model.eval()
        torch.manual_seed(1)
        c = model(ids)
        torch.manual_seed(2)
        d = model(ids)
    assert_tensor_equal(d, c, name="eval logits", why="model.eval() turns dropout off (§4.6)")


# --- the kit's guarantees: clear errors for bad configs and input ---------------------------


def test_heads_not_dividing_the_width_is_a_clear_error(ref):
    with pytest.raises(ValueError, match=r"emb_dim=64 is not divisible by n_heads=5"):
        ref.GPTModel(small_config(ref, n_heads=5))


def test_incomplete_config_names_the_missing_keys(ref):
    cfg = small_config(ref)
    del cfg["qkv_bias"]
    with pytest.raises(ValueError, match="qkv_bias"):
        ref.GPTModel(cfg)


def test_unknown_preset_lists_the_known_ones(ref):
    with pytest.raises(ValueError, match=r"unknown model preset 'gpt2-huge'.*gpt2-small \(124M\)"):
        get_config("gpt2-huge")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("gpt2-small (124M)", 768), ("gpt2-small", 768), ("124M", 768), ("gpt2-xl", 1600)],
)
def test_presets_resolve_by_full_short_and_size_name(ref, name, expected):
    assert_equal(get_config(name)["emb_dim"], expected, name=f"{name} emb_dim")


def test_too_long_input_says_to_crop(ref):
    model = build(ref.GPTModel, small_config(ref, context_length=8))
    with pytest.raises(ValueError, match=r"9 tokens but the model's context_length is 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_float_token_ids_are_a_clear_error(ref):
    model = build(ref.GPTModel, small_config(ref))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.tensor([[1.0, 2.0]]))


def test_out_of_vocabulary_ids_are_a_clear_error(ref):
    model = build(ref.GPTModel, small_config(ref))
    with pytest.raises(ValueError, match=r"\[0, 50257\)"):
        model(torch.tensor([[1, 50257]]))


def test_1d_input_is_a_clear_error(ref):
    model = build(ref.GPTModel, small_config(ref))
    with pytest.raises(ValueError, match=r"\(batch, tokens\)"):
        model(torch.tensor([1, 2, 3]))


# --- blind spots: the same weights must give the book's numbers, part by part -------------


@pytest.mark.exercise("LayerNorm")
def test_layernorm_of_a_constant_row_is_finite(impl):
    out = impl.LayerNorm(emb_dim=4)(torch.full((2, 4), 3.0))
    assert_tensor_equal(
        out,
        torch.zeros(2, 4),
        name="LayerNorm(constant rows)",
        atol=1e-6,
        why="a constant row has variance 0; eps=1e-5 under the square root keeps "
        "(x - mean) / sqrt(var + eps) finite, so the output is the shift (§4.2)",
    )


@pytest.mark.exercise("LayerNorm")
def test_layernorm_of_rows_with_a_small_variance_keeps_eps_1e_5(impl):
    torch.manual_seed(123)
    x = torch.randn(3, 8) * 1e-3  # variance near 1e-6: eps=1e-5 under the root decides the output
    assert_tensor_equal(
        impl.LayerNorm(emb_dim=8)(x),
        torch.nn.functional.layer_norm(x, (8,), eps=1e-5),
        name="LayerNorm(x * 1e-3)",
        atol=1e-4,
        why="(x - mean) / sqrt(var + eps) with eps=1e-5 (§4.2)",
    )


@pytest.mark.exercise("LayerNorm")
def test_layernorm_uses_the_biased_variance(impl):
    torch.manual_seed(123)
    x = torch.randn(3, 4)  # few columns: dividing by n - 1 instead of n shows clearly
    assert_tensor_equal(
        impl.LayerNorm(emb_dim=4)(x),
        torch.nn.functional.layer_norm(x, (4,), eps=1e-5),
        name="LayerNorm(x)",
        atol=1e-5,
        why="the variance divides by n, not n - 1: x.var(dim=-1, keepdim=True, unbiased=False) "
        "(§4.2)",
    )


@pytest.mark.exercise("TransformerBlock")
def test_transformer_block_equals_the_books_with_the_same_weights(impl, ref):
    cfg = small_config(ref)
    ours, theirs = build(impl.TransformerBlock, cfg), build(book.TransformerBlock, cfg)
    x = torch.rand(2, 5, cfg["emb_dim"])
    with diagnosed(lambda: impl.TransformerBlock(cfg), lambda: ref.TransformerBlock(cfg), [x]):
        ours.load_state_dict(theirs.state_dict())
        ours.eval(), theirs.eval()
        with torch.no_grad():
            assert_tensor_equal(
                ours(x),
                theirs(x),
                name="TransformerBlock(x)",
                atol=1e-5,
                why="same weights, same computation: pre-norm attention and feed-forward, each "
                "with a shortcut (§4.5)",
            )


@pytest.mark.exercise("TransformerBlock")
def test_transformer_block_in_training_mode_drops_as_the_book(impl, ref):
    cfg = small_config(ref, drop_rate=0.5)
    ours, theirs = build(impl.TransformerBlock, cfg), build(book.TransformerBlock, cfg)
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(2, 5, cfg["emb_dim"])
    with torch.no_grad():
        torch.manual_seed(7)
        got = ours.train()(x)
        torch.manual_seed(7)
        want = theirs.train()(x)
    assert_tensor_equal(
        got,
        want,
        name="TransformerBlock(x) in training mode, dropout 0.5, seed 7",
        atol=1e-5,
        why="in training mode the book drops out each sub-layer's output, "
        "x + drop_shortcut(att(norm1(x))) and x + drop_shortcut(ff(norm2(x))): the same "
        "dropout calls in the same order draw the same random numbers (§4.5)",
    )


@pytest.mark.exercise("MultiHeadAttention")
def test_multihead_attention_equals_the_books_with_the_same_weights(impl, ref):
    kwargs = {"d_in": 12, "d_out": 12, "context_length": 8, "dropout": 0.0, "num_heads": 3}
    torch.manual_seed(123)
    ours, theirs = impl.MultiHeadAttention(**kwargs), book.MultiHeadAttention(**kwargs)
    x = torch.rand(2, 7, 12)
    make = (lambda: impl.MultiHeadAttention(**kwargs), lambda: ref.MultiHeadAttention(**kwargs))
    with diagnosed(*make, [x]):
        ours.load_state_dict(theirs.state_dict())
        with torch.no_grad():
            assert_tensor_equal(
                ours(x),
                theirs(x),
                name="MultiHeadAttention(x)",
                atol=1e-5,
                why="same weights, same computation: causal mask, scores scaled by "
                "sqrt(head_dim), heads split and merged with transpose(1, 2) (§3.6)",
            )


# --- outputs with the book's weights copied in (issue 12: mistakes the shapes cannot see) ---


def with_the_books_weights(made: torch.nn.Module, book: torch.nn.Module) -> torch.nn.Module:
    """`made` holding `book`'s parameters, with every parameter made distinct (norms too)."""
    with torch.no_grad():
        for p in book.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    made.load_state_dict(book.state_dict())
    return made


@pytest.mark.exercise("FeedForward")
def test_feedforward_computes_the_books_function(impl, ref):
    cfg = small_config(ref)
    ff = with_the_books_weights(impl.FeedForward(cfg), ref.FeedForward(cfg))
    x = torch.randn(2, 3, cfg["emb_dim"])
    assert_tensor_equal(
        ff(x),
        _book_ff(ref, cfg, ff)(x),
        name="FeedForward(x)",
        atol=1e-5,
        why="Linear(emb, 4 * emb), then GELU (the tanh approximation), then Linear(4 * emb, "
        "emb) (§4.3)",
    )


def _book_ff(ref, cfg, ff):
    book = ref.FeedForward(cfg)
    book.load_state_dict(ff.state_dict())
    return book


@pytest.mark.exercise("TransformerBlock")
def test_transformer_block_uses_norm1_then_norm2(impl, ref):
    cfg = small_config(ref)
    book = ref.TransformerBlock(cfg).eval()
    block = with_the_books_weights(impl.TransformerBlock(cfg), book).eval()
    x = torch.randn(2, 4, cfg["emb_dim"])
    assert_tensor_equal(
        block(x),
        book(x),
        name="TransformerBlock(x)",
        atol=1e-5,
        why="x = x + att(norm1(x)), then x = x + ff(norm2(x)): norm1 before attention, norm2 "
        "before the feed-forward, each with its own scale and shift (§4.5)",
    )


@pytest.mark.exercise("MultiHeadAttention")
def test_attention_dropout_drops_attention_weights(impl, ref):
    kwargs = {"d_in": 8, "d_out": 8, "context_length": 6, "dropout": 0.5, "num_heads": 2}
    book = ref.MultiHeadAttention(**kwargs).train()
    mha = with_the_books_weights(impl.MultiHeadAttention(**kwargs), book).train()
    x = torch.rand(1, 6, 8)
    torch.manual_seed(7)
    got = mha(x)
    torch.manual_seed(7)
    assert_tensor_equal(
        got,
        book(x),
        name="MultiHeadAttention(x) in training mode, dropout 0.5, seed 7",
        atol=1e-5,
        why="dropout is applied to the attention weights, after the softmax and before "
        "multiplying with the values — not to the context vectors (§3.5.2)",
    )
