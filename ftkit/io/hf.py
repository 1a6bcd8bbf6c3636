"""Hugging Face's GPT-2 layout to and from the book's GPTModel and its `params` dict (book §5.5's mapping).

Hugging Face keeps OpenAI's layout: Conv1D weights are (in, out) and query/key/value
are fused in `c_attn`, under names such as `h.3.attn.c_attn.weight` (with a
`transformer.` prefix in GPT2LMHeadModel); transformers is an independent
implementation to check ours against. `params_from_hf_state_dict` turns such a
state dict (a `model.safetensors` file) into the book's `params`, and
`params_from_state_dict` a GPTModel state dict (the book's `.pth` files), so every
weights source goes through the same `load_weights_into_gpt`. The model-level
helpers (`to_hf_model`, `from_hf_model`) need transformers, imported only when
called (the `hf` extra); the state-dict converters need only torch and numpy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

HF_HINT = "pip install 'llm-finetune-kit[hf]'"

_HF_BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal masks older transformers store


def _import_transformers():
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            f"Hugging Face interop needs transformers, which is not installed: {HF_HINT}"
        ) from err
    return transformers


def to_hf_state_dict(state_dict: Mapping[str, torch.Tensor], cfg: Mapping) -> dict:
    """Our GPTModel state_dict in transformers' GPT2LMHeadModel layout (book §5.5's mapping, reversed).

    Hugging Face keeps OpenAI's Conv1D layout: weights are (in, out) and query/key/value
    are fused in `c_attn`, so ours are transposed and concatenated. `lm_head.weight` is
    our out_head; transformers ties it to wte unless its config says
    `tie_word_embeddings=False` (see `hf_config`). The causal-mask buffers are not
    included: transformers builds them itself.
    """
    sd = dict(state_dict)

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise ValueError(f"state_dict has no {key!r}; is it a GPTModel's (book ch. 4)?")
        return sd[key].detach()

    d = cfg["emb_dim"]
    hf = {
        "transformer.wte.weight": take("tok_emb.weight"),
        "transformer.wpe.weight": take("pos_emb.weight"),
    }
    for i in range(cfg["n_layers"]):
        p, h = f"trf_blocks.{i}.", f"transformer.h.{i}."
        qkv = ("W_query", "W_key", "W_value")
        hf[h + "ln_1.weight"] = take(p + "norm1.scale")
        hf[h + "ln_1.bias"] = take(p + "norm1.shift")
        hf[h + "attn.c_attn.weight"] = torch.cat([take(f"{p}att.{n}.weight").T for n in qkv], dim=1)
        hf[h + "attn.c_attn.bias"] = torch.cat(
            [take(f"{p}att.{n}.bias") if f"{p}att.{n}.bias" in sd else torch.zeros(d) for n in qkv]
        )
        hf[h + "attn.c_proj.weight"] = take(p + "att.out_proj.weight").T
        hf[h + "attn.c_proj.bias"] = take(p + "att.out_proj.bias")
        hf[h + "ln_2.weight"] = take(p + "norm2.scale")
        hf[h + "ln_2.bias"] = take(p + "norm2.shift")
        hf[h + "mlp.c_fc.weight"] = take(p + "ff.layers.0.weight").T
        hf[h + "mlp.c_fc.bias"] = take(p + "ff.layers.0.bias")
        hf[h + "mlp.c_proj.weight"] = take(p + "ff.layers.2.weight").T
        hf[h + "mlp.c_proj.bias"] = take(p + "ff.layers.2.bias")
    if f"trf_blocks.{cfg['n_layers']}.norm1.scale" in sd:
        raise ValueError(f"state_dict has more than cfg['n_layers']={cfg['n_layers']} blocks")
    hf["transformer.ln_f.weight"] = take("final_norm.scale")
    hf["transformer.ln_f.bias"] = take("final_norm.shift")
    hf["lm_head.weight"] = take("out_head.weight")
    return {k: v.contiguous().clone() for k, v in hf.items()}


def from_hf_state_dict(hf_state_dict: Mapping[str, torch.Tensor], cfg: Mapping) -> dict:
    """A transformers GPT-2 state_dict (GPT2LMHeadModel or GPT2Model) in our GPTModel layout (book §5.5).

    The inverse of `to_hf_state_dict`: Conv1D weights are transposed, `c_attn` split
    into W_query/W_key/W_value, and our `att.mask` buffers added, so the result
    loads with `strict=True`. Without `lm_head.weight` the output head is tied to wte.
    """
    sd = {
        k.removeprefix("transformer."): v.detach()
        for k, v in hf_state_dict.items()
        if not k.endswith(_HF_BUFFERS)
    }
    n_layers, d, ctx = cfg["n_layers"], cfg["emb_dim"], cfg["context_length"]

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise ValueError(f"Hugging Face state_dict has no {key!r} (nor 'transformer.{key}')")
        return sd.pop(key)

    ours = {"tok_emb.weight": take("wte.weight"), "pos_emb.weight": take("wpe.weight")}
    mask = torch.triu(torch.ones(ctx, ctx), diagonal=1)
    for i in range(n_layers):
        h, p = f"h.{i}.", f"trf_blocks.{i}."
        c_attn_w, c_attn_b = take(h + "attn.c_attn.weight"), take(h + "attn.c_attn.bias")
        if c_attn_w.shape[-1] != 3 * d:
            raise ValueError(
                f"transformer.{h}attn.c_attn.weight: shape {tuple(c_attn_w.shape)}, but "
                f"cfg['emb_dim']={d} needs (.., {3 * d})"
            )
        for n, w, b in zip(
            ("W_query", "W_key", "W_value"), c_attn_w.split(d, dim=1), c_attn_b.split(d)
        ):
            ours[f"{p}att.{n}.weight"] = w.T
            if cfg["qkv_bias"]:
                ours[f"{p}att.{n}.bias"] = b
            elif torch.any(b != 0):
                raise ValueError(
                    f"transformer.{h}attn.c_attn.bias is non-zero but cfg['qkv_bias'] is "
                    "False: build the model with qkv_bias=True (GPT-2 has these biases)"
                )
        ours[p + "att.out_proj.weight"] = take(h + "attn.c_proj.weight").T
        ours[p + "att.out_proj.bias"] = take(h + "attn.c_proj.bias")
        ours[p + "att.mask"] = mask.clone()
        ours[p + "ff.layers.0.weight"] = take(h + "mlp.c_fc.weight").T
        ours[p + "ff.layers.0.bias"] = take(h + "mlp.c_fc.bias")
        ours[p + "ff.layers.2.weight"] = take(h + "mlp.c_proj.weight").T
        ours[p + "ff.layers.2.bias"] = take(h + "mlp.c_proj.bias")
        ours[p + "norm1.scale"] = take(h + "ln_1.weight")
        ours[p + "norm1.shift"] = take(h + "ln_1.bias")
        ours[p + "norm2.scale"] = take(h + "ln_2.weight")
        ours[p + "norm2.shift"] = take(h + "ln_2.bias")
    ours["final_norm.scale"] = take("ln_f.weight")
    ours["final_norm.shift"] = take("ln_f.bias")
    lm_head = sd.pop("lm_head.weight", None)
    ours["out_head.weight"] = ours["tok_emb.weight"] if lm_head is None else lm_head
    if sd:
        raise ValueError(
            f"Hugging Face state_dict has entries a {n_layers}-block GPTModel cannot take: "
            f"{sorted(sd)[:5]}; is cfg['n_layers'] right?"
        )
    return {k: v.contiguous().clone() for k, v in ours.items()}


def hf_config(cfg: Mapping, tie_word_embeddings: bool = True):
    """A transformers GPT2Config for our model config (GELU tanh approximation, LayerNorm eps 1e-5)."""
    transformers = _import_transformers()
    return transformers.GPT2Config(
        vocab_size=cfg["vocab_size"],
        n_positions=cfg["context_length"],
        n_embd=cfg["emb_dim"],
        n_layer=cfg["n_layers"],
        n_head=cfg["n_heads"],
        activation_function="gelu_new",  # GPT-2's tanh-approximated GELU, as ours (§4.3)
        resid_pdrop=cfg["drop_rate"],
        embd_pdrop=cfg["drop_rate"],
        attn_pdrop=cfg["drop_rate"],
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=tie_word_embeddings,
    )


def to_hf_model(gpt: nn.Module, cfg: Mapping | None = None):
    """A transformers GPT2LMHeadModel with `gpt`'s weights (cfg defaults to `gpt.cfg`), in eval mode."""
    transformers = _import_transformers()
    cfg = dict(cfg if cfg is not None else gpt.cfg)
    sd = to_hf_state_dict(gpt.state_dict(), cfg)
    tied = torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"])
    model = transformers.GPT2LMHeadModel(hf_config(cfg, tie_word_embeddings=tied))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    leftover = [k for k in missing if not k.endswith(_HF_BUFFERS)]
    if leftover or unexpected:
        raise ValueError(f"transformers GPT-2 did not take: missing {leftover}, extra {unexpected}")
    return model.eval()


def from_hf_model(hf_model, **overrides) -> nn.Module:
    """Our GPTModel (eval mode) with a transformers GPT-2's weights; `overrides` change the config."""
    from reference.model import GPTModel

    hc = hf_model.config
    if hc.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(
            f"transformers model uses activation {hc.activation_function!r}; GPTModel has "
            "GPT-2's tanh-approximated GELU ('gelu_new')"
        )
    if abs(hc.layer_norm_epsilon - 1e-5) > 1e-12:
        raise ValueError(
            f"transformers model has layer_norm_epsilon={hc.layer_norm_epsilon}; ours is 1e-5"
        )
    cfg = {
        "vocab_size": hc.vocab_size,
        "context_length": hc.n_positions,
        "emb_dim": hc.n_embd,
        "n_heads": hc.n_head,
        "n_layers": hc.n_layer,
        "drop_rate": hc.resid_pdrop,
        "qkv_bias": True,
        **overrides,
    }
    gpt = GPTModel(cfg)
    gpt.load_state_dict(from_hf_state_dict(hf_model.state_dict(), cfg), strict=True)
    return gpt.eval()


# ---------------------------------------------------------------------------
# Hugging Face / GPTModel state dicts -> the book's params dict
# ---------------------------------------------------------------------------


def _as_array(value) -> np.ndarray:
    """A float32 numpy copy of a tensor or array (bf16/fp16 files included)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=torch.float32).numpy().copy()
    return np.asarray(value, dtype=np.float32).copy()


def params_from_hf_state_dict(hf_state_dict: Mapping) -> dict:
    """A Hugging Face GPT-2 state dict (e.g. `model.safetensors`) as the book's `params` (book §5.5).

    Keys may carry GPT2LMHeadModel's `transformer.` prefix or not (the `gpt2` repos'
    files do not). Hugging Face's Conv1D layout is OpenAI's, so arrays are taken as
    they are: `h.3.attn.c_attn.weight` becomes `params["blocks"][3]["attn"]["c_attn"]["w"]`,
    `ln_1.weight`/`bias` become `ln_1` `g`/`b`. GPT-2 ties its output layer to `wte`;
    an `lm_head.weight` that differs from it is refused (the book's loader copies wte).
    """
    sd = {
        k.removeprefix("transformer."): v
        for k, v in hf_state_dict.items()
        if not k.endswith(_HF_BUFFERS)
    }
    lm_head = sd.pop("lm_head.weight", None)

    def take(key: str) -> np.ndarray:
        if key not in sd:
            raise ValueError(
                f"Hugging Face GPT-2 state dict has no {key!r} (nor 'transformer.{key}'); "
                "is it a GPT-2 checkpoint?"
            )
        return _as_array(sd.pop(key))

    n_layer = sum(1 for k in sd if k.startswith("h.") and k.endswith(".ln_1.weight"))
    params: dict = {"wte": take("wte.weight"), "wpe": take("wpe.weight"), "blocks": []}
    for i in range(n_layer):
        h = f"h.{i}."

        def pair(name: str, w: str = "w", b: str = "b", h=h) -> dict:
            return {w: take(f"{h}{name}.weight"), b: take(f"{h}{name}.bias")}

        params["blocks"].append(
            {
                "attn": {"c_attn": pair("attn.c_attn"), "c_proj": pair("attn.c_proj")},
                "mlp": {"c_fc": pair("mlp.c_fc"), "c_proj": pair("mlp.c_proj")},
                "ln_1": pair("ln_1", "g"),
                "ln_2": pair("ln_2", "g"),
            }
        )
    params["g"], params["b"] = take("ln_f.weight"), take("ln_f.bias")
    if sd:
        raise ValueError(
            f"Hugging Face GPT-2 state dict has entries a {n_layer}-block GPT-2 does not: "
            f"{sorted(sd)[:5]}"
        )
    if lm_head is not None and not np.array_equal(_as_array(lm_head), params["wte"]):
        raise ValueError(
            "lm_head.weight differs from wte.weight: GPT-2 ties them, and the book's "
            "load_weights_into_gpt copies wte into out_head; is this a pretrained GPT-2?"
        )
    return params


def params_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """The book's GPTModel state dict (its converted `.pth` files) as the book's `params` (book §5.5).

    The inverse of `load_weights_into_gpt`: weights are transposed back to OpenAI's
    (in, out) layout and W_query/W_key/W_value concatenated into `c_attn`, so a
    `.pth` goes through the same loader as every other source.
    """
    for key in ("tok_emb.weight", "trf_blocks.0.norm1.scale"):
        if key not in state_dict:
            raise ValueError(f"state dict has no {key!r}; is it a GPTModel's (book ch. 4)?")
    cfg = {
        "emb_dim": state_dict["tok_emb.weight"].shape[1],
        "n_layers": sum(1 for k in state_dict if k.endswith(".norm1.scale")),
    }
    return params_from_hf_state_dict(to_hf_state_dict(state_dict, cfg))
