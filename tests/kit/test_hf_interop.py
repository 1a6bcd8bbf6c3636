"""Our GPTModel against Hugging Face's independent GPT-2: same weights must give the same logits.

transformers keeps OpenAI's checkpoint layout (Conv1D (in, out) weights, fused
c_attn), so a conversion that matches its logits also checks the transposes and
the query/key/value split that `load_weights_into_gpt` does (book §5.5).
"""

from __future__ import annotations

import pytest
import torch

from ftkit.asserts import assert_tensor_equal
from ftkit.io import hf
from ftkit.presets import get_config

transformers = pytest.importorskip("transformers", reason="needs the hf extra")

WHY = (
    "our GPTModel and Hugging Face's GPT2LMHeadModel are the same network (book ch. 4); "
    "with the same weights their logits agree up to float rounding"
)


def tiny_hf_config():
    return transformers.GPT2Config(
        n_embd=64,
        n_layer=2,
        n_head=4,
        vocab_size=50257,
        n_positions=128,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )


def tiny_cfg(ref):
    return get_config("tiny", context_length=128)


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(tiny_hf_config()).eval()
    # transformers initialises biases and LayerNorms to 0/1; random values catch swapped ones.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def token_ids():
    return torch.randint(0, 50257, (2, 17), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def our_model(ref):
    torch.manual_seed(123)
    return ref.GPTModel(tiny_cfg(ref)).eval()  # out_head untied from tok_emb, unlike GPT-2


def test_hf_weights_in_our_model_give_hf_logits(ref, hf_model, token_ids):
    cfg = tiny_cfg(ref)
    gpt = ref.GPTModel(cfg).eval()
    gpt.load_state_dict(hf.from_hf_state_dict(hf_model.state_dict(), cfg), strict=True)
    with torch.no_grad():
        ours, theirs = gpt(token_ids), hf_model(token_ids).logits
    assert_tensor_equal(ours, theirs, name="logits", why=WHY, atol=1e-5)


def test_our_weights_in_hf_model_give_our_logits(our_model, token_ids):
    converted = hf.to_hf_model(our_model)
    assert not converted.config.tie_word_embeddings, "an untied out_head needs an untied lm_head"
    with torch.no_grad():
        theirs, ours = converted(token_ids).logits, our_model(token_ids)
    assert_tensor_equal(theirs, ours, name="logits", why=WHY, atol=1e-5)
    back = hf.from_hf_model(converted)
    for key, value in our_model.state_dict().items():
        assert_tensor_equal(
            back.state_dict()[key], value, name=key, why="a round trip only moves numbers"
        )


def test_hf_state_dict_has_every_hf_parameter(ref, our_model, hf_model):
    converted = hf.to_hf_state_dict(our_model.state_dict(), tiny_cfg(ref))
    expected = {k: v.shape for k, v in hf_model.state_dict().items()}
    expected = {
        k: s for k, s in expected.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))
    }
    assert {k: v.shape for k, v in converted.items()} == expected


def test_hf_state_dict_with_more_blocks_than_cfg_is_rejected(ref, hf_model):
    cfg = get_config("tiny", context_length=128, n_layers=1)
    with pytest.raises(ValueError, match=r"h\.1\..*n_layers"):
        hf.from_hf_state_dict(hf_model.state_dict(), cfg)


def test_hf_state_dict_missing_a_tensor_names_it(ref, hf_model):
    sd = dict(hf_model.state_dict())
    del sd["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(ValueError, match=r"h\.1\.mlp\.c_fc\.bias"):
        hf.from_hf_state_dict(sd, tiny_cfg(ref))


def test_missing_transformers_says_which_extra(monkeypatch, ref):
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    with pytest.raises(ImportError, match=r"llm-finetune-kit\[hf\]"):
        hf.hf_config(tiny_cfg(ref))
