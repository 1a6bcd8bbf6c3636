"""Your `assign` and `load_weights_into_gpt` (book §5.5) on a tiny GPT-2 built by the tests.

The `params` dict is built by hand in the book's layout (no download, no
TensorFlow); the oracle is Hugging Face's independent GPT-2 given the same arrays
(its Conv1D layout is OpenAI's), or the reference loader where transformers is not
installed. Downloads, file hashes and the TensorFlow reader are the kit's, tested
in tests/kit/test_gpt2_weights.py.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from tiny_gpt2 import (
    CTX,
    VOCAB,
    D,
    book_params,
    hf_model_from_arrays,
    openai_arrays,
    tiny_cfg,
)

from ftkit.asserts import assert_tensor_equal

pytestmark = pytest.mark.stage("model")

WHY = (
    "load_weights_into_gpt must transpose OpenAI's (in, out) matrices and split c_attn into "
    "query, key and value (book §5.5); then the model computes what GPT-2 computes"
)


@pytest.fixture(scope="module")
def arrays():
    return openai_arrays()


def expected_logits(ref, arrays, token_ids):
    """GPT-2's logits for the arrays: Hugging Face's model if installed, else the reference loader."""
    with torch.no_grad():
        if importlib.util.find_spec("transformers") is not None:
            return hf_model_from_arrays(arrays)(token_ids).logits
        gpt = ref.GPTModel(tiny_cfg(ref)).eval()
        ref.load_weights_into_gpt(gpt, book_params(arrays))
        return gpt(token_ids)


# Where each tensor of the book's GPTModel comes from in OpenAI's params (book §5.5).
SOURCES = (
    ("pos_emb", "params['wpe']"),
    ("tok_emb", "params['wte']"),
    ("W_query", "the first third of c_attn['w'|'b'], split along the last axis, weight .T"),
    ("W_key", "the second third of c_attn['w'|'b'], split along the last axis, weight .T"),
    ("W_value", "the last third of c_attn['w'|'b'], split along the last axis, weight .T"),
    ("att.out_proj", "attn c_proj, weight .T"),
    ("ff.layers.0", "mlp c_fc, weight .T"),
    ("ff.layers.2", "mlp c_proj, weight .T"),
    ("norm1", "ln_1 (scale <- 'g', shift <- 'b')"),
    ("norm2", "ln_2 (scale <- 'g', shift <- 'b')"),
    ("final_norm", "params['g'] (scale) and params['b'] (shift)"),
    ("out_head", "a copy of params['wte'] (weight tying)"),
)


def load_and_compare_each_tensor(impl, ref, gpt, arrays) -> None:
    """Load with the learner's code, then name the first parameter that differs from the book's loading."""
    try:
        impl.load_weights_into_gpt(gpt, params=book_params(arrays))
    except ValueError as err:
        if "array split does not result in an equal division" not in str(err):
            raise
        raise AssertionError(
            f"np.split failed ({err}): c_attn['w'] has shape (emb_dim, 3 * emb_dim), query, key "
            "and value side by side on the last axis — split with np.split(..., 3, axis=-1) "
            "(book §5.5)"
        ) from None  # the learner reads this message first, not numpy's
    want = ref.GPTModel(tiny_cfg(ref))
    ref.load_weights_into_gpt(want, book_params(arrays))
    got = dict(gpt.named_parameters())
    for name, tensor in want.named_parameters():
        if name in got and got[name].shape == tensor.shape and torch.allclose(got[name], tensor):
            continue
        source = next((src for key, src in SOURCES if key in name), "the book's params layout")
        raise AssertionError(
            f"{name} after load_weights_into_gpt differs from the book's loading: it comes from "
            f"{source} (book §5.5); OpenAI stores linear layers as (in, out), nn.Linear as "
            "(out, in) — a square matrix loads without a shape error even when not transposed"
        )


@pytest.mark.exercise("load_weights_into_gpt")
def test_loaded_model_computes_gpt2s_logits(impl, ref, arrays):
    gpt = ref.GPTModel(tiny_cfg(ref)).eval()
    load_and_compare_each_tensor(impl, ref, gpt, arrays)
    token_ids = torch.randint(0, VOCAB, (2, CTX), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = gpt(token_ids)
    assert_tensor_equal(
        ours, expected_logits(ref, arrays, token_ids), name="logits", why=WHY, atol=1e-5
    )


@pytest.mark.exercise("load_weights_into_gpt")
def test_out_head_is_a_copy_of_the_token_embedding(impl, ref, arrays):
    gpt = ref.GPTModel(tiny_cfg(ref))
    impl.load_weights_into_gpt(gpt, params=book_params(arrays))
    assert_tensor_equal(
        gpt.out_head.weight,
        torch.from_numpy(arrays["model/wte"]),
        name="out_head.weight",
        why="GPT-2 reuses its token embedding as output layer (weight tying, book §5.5)",
    )


@pytest.mark.exercise("load_weights_into_gpt")
def test_shape_mismatch_is_a_value_error(impl, ref, arrays):
    gpt = ref.GPTModel(tiny_cfg(ref, context_length=2 * CTX))
    with pytest.raises(ValueError):  # the book's assign raises ValueError on a shape mismatch
        impl.load_weights_into_gpt(gpt, params=book_params(arrays))


@pytest.mark.exercise("load_weights_into_gpt")
@pytest.mark.beyond_book
def test_shape_mismatch_names_the_tensor_and_both_shapes(impl, ref, arrays):
    gpt = ref.GPTModel(tiny_cfg(ref, context_length=2 * CTX))
    with pytest.raises(ValueError, match=rf"pos_emb\.weight.*\({2 * CTX}, {D}\).*\({CTX}, {D}\)"):
        impl.load_weights_into_gpt(gpt, params=book_params(arrays))

    params = book_params(arrays)
    params["blocks"][1]["mlp"]["c_fc"]["w"] = np.zeros((D, 2 * D), np.float32)
    with pytest.raises(ValueError, match=r"trf_blocks\.1\.ff\.layers\.0\.weight"):
        impl.load_weights_into_gpt(ref.GPTModel(tiny_cfg(ref)), params=params)


@pytest.mark.exercise("load_weights_into_gpt")
@pytest.mark.beyond_book
def test_missing_param_names_its_path(impl, ref, arrays):
    params = book_params(arrays)
    del params["blocks"][0]["ln_2"]["g"]
    with pytest.raises(ValueError, match=r"params\['blocks'\]\[0\]\['ln_2'\]\['g'\] is missing"):
        impl.load_weights_into_gpt(ref.GPTModel(tiny_cfg(ref)), params=params)


@pytest.mark.exercise("load_weights_into_gpt")
@pytest.mark.beyond_book
def test_block_count_mismatch_says_which_config(impl, ref, arrays):
    with pytest.raises(ValueError, match=r"2 transformer blocks, model has 3"):
        impl.load_weights_into_gpt(
            ref.GPTModel(tiny_cfg(ref, n_layers=3)), params=book_params(arrays)
        )


@pytest.mark.exercise("assign")
@pytest.mark.beyond_book
def test_assign_checks_shape_and_keeps_dtype(impl):
    left = torch.zeros(2, 3, dtype=torch.float64)
    out = impl.assign(left, right=np.ones((2, 3), np.float32), name="x.weight")
    assert isinstance(out, torch.nn.Parameter) and out.dtype == torch.float64
    with pytest.raises(
        ValueError, match=r"x\.weight: model has \(2, 3\), checkpoint gives \(3, 2\)"
    ):
        impl.assign(left, right=np.ones((3, 2)), name="x.weight")


@pytest.mark.exercise("assign")
def test_assign_returns_a_parameter_of_right_and_refuses_another_shape(impl):
    left = torch.zeros(2, 3)
    right = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = impl.assign(left, right=right)
    assert isinstance(out, torch.nn.Parameter), (
        f"assign must return a torch.nn.Parameter (book §5.5), got {type(out).__name__}"
    )
    assert_tensor_equal(
        out.detach(),
        torch.from_numpy(right),
        name="assign(left, right)",
        why="the new parameter holds the checkpoint's values (book §5.5)",
    )
    try:
        impl.assign(left, right=np.ones((3, 2), np.float32))
    except ValueError:
        return
    raise AssertionError(
        "assign(left of shape (2, 3), right of shape (3, 2)) must raise ValueError — the book's "
        "assign checks the shape first: 'Shape mismatch. Left: ..., Right: ...' (§5.5)"
    )
