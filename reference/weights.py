"""Loading OpenAI's pretrained GPT-2 weights into the book's GPTModel (book §5.5).

`params` is the nested dict the book's `download_and_load_gpt2` returns (the kit's
is `ftkit.io.gpt2.download_and_load_gpt2`, which also reads Hugging Face's and the
book's PyTorch files into the same layout):

    params["wte"], params["wpe"]                   token / position embeddings
    params["blocks"][b]["attn"]["c_attn"]["w"|"b"] query, key, value side by side
    params["blocks"][b]["attn"]["c_proj"]["w"|"b"] attention output projection
    params["blocks"][b]["mlp"]["c_fc"|"c_proj"]    feed-forward layers
    params["blocks"][b]["ln_1"|"ln_2"]["g"|"b"]    LayerNorm scale / shift
    params["g"], params["b"]                       final LayerNorm

OpenAI stores linear layers as (in, out) matrices (TensorFlow's convention) with
query/key/value fused in `c_attn`; nn.Linear keeps (out, in), so each weight is
transposed and c_attn split in three. Lines beyond the book's are marked `# kit:`.
"""

from __future__ import annotations

import numpy as np
import torch


def assign(left, right, *, name="tensor"):  # kit: name= says which tensor in errors
    """A new Parameter holding `right`, after checking it has `left`'s shape (book §5.5)."""
    if isinstance(right, torch.Tensor):  # kit: also take tensors (HF/.pth sources give them)
        right = right.detach().cpu().numpy()
    if tuple(left.shape) != tuple(np.shape(right)):  # kit: arrays or tensors; names the tensor
        raise ValueError(
            f"{name}: model has {tuple(left.shape)}, checkpoint gives "
            f"{tuple(np.shape(right))} (shape mismatch)"
        )
    # kit: the model's dtype and device, so loading moves nothing (the book: float32, CPU)
    return torch.nn.Parameter(torch.tensor(right).to(dtype=left.dtype, device=left.device))


def load_weights_into_gpt(gpt, params):
    """Copy OpenAI's GPT-2 arrays into the book's GPTModel, in place (book §5.5)."""
    _check_params(gpt, params)  # kit: a clear error (naming the tensor) before anything loads
    gpt.pos_emb.weight = assign(gpt.pos_emb.weight, params["wpe"])
    gpt.tok_emb.weight = assign(gpt.tok_emb.weight, params["wte"])

    for b in range(len(params["blocks"])):
        q_w, k_w, v_w = np.split((params["blocks"][b]["attn"]["c_attn"])["w"], 3, axis=-1)
        gpt.trf_blocks[b].att.W_query.weight = assign(gpt.trf_blocks[b].att.W_query.weight, q_w.T)
        gpt.trf_blocks[b].att.W_key.weight = assign(gpt.trf_blocks[b].att.W_key.weight, k_w.T)
        gpt.trf_blocks[b].att.W_value.weight = assign(gpt.trf_blocks[b].att.W_value.weight, v_w.T)

        q_b, k_b, v_b = np.split((params["blocks"][b]["attn"]["c_attn"])["b"], 3, axis=-1)
        gpt.trf_blocks[b].att.W_query.bias = assign(gpt.trf_blocks[b].att.W_query.bias, q_b)
        gpt.trf_blocks[b].att.W_key.bias = assign(gpt.trf_blocks[b].att.W_key.bias, k_b)
        gpt.trf_blocks[b].att.W_value.bias = assign(gpt.trf_blocks[b].att.W_value.bias, v_b)

        gpt.trf_blocks[b].att.out_proj.weight = assign(
            gpt.trf_blocks[b].att.out_proj.weight, params["blocks"][b]["attn"]["c_proj"]["w"].T
        )
        gpt.trf_blocks[b].att.out_proj.bias = assign(
            gpt.trf_blocks[b].att.out_proj.bias, params["blocks"][b]["attn"]["c_proj"]["b"]
        )

        gpt.trf_blocks[b].ff.layers[0].weight = assign(
            gpt.trf_blocks[b].ff.layers[0].weight, params["blocks"][b]["mlp"]["c_fc"]["w"].T
        )
        gpt.trf_blocks[b].ff.layers[0].bias = assign(
            gpt.trf_blocks[b].ff.layers[0].bias, params["blocks"][b]["mlp"]["c_fc"]["b"]
        )
        gpt.trf_blocks[b].ff.layers[2].weight = assign(
            gpt.trf_blocks[b].ff.layers[2].weight, params["blocks"][b]["mlp"]["c_proj"]["w"].T
        )
        gpt.trf_blocks[b].ff.layers[2].bias = assign(
            gpt.trf_blocks[b].ff.layers[2].bias, params["blocks"][b]["mlp"]["c_proj"]["b"]
        )

        gpt.trf_blocks[b].norm1.scale = assign(
            gpt.trf_blocks[b].norm1.scale, params["blocks"][b]["ln_1"]["g"]
        )
        gpt.trf_blocks[b].norm1.shift = assign(
            gpt.trf_blocks[b].norm1.shift, params["blocks"][b]["ln_1"]["b"]
        )
        gpt.trf_blocks[b].norm2.scale = assign(
            gpt.trf_blocks[b].norm2.scale, params["blocks"][b]["ln_2"]["g"]
        )
        gpt.trf_blocks[b].norm2.shift = assign(
            gpt.trf_blocks[b].norm2.shift, params["blocks"][b]["ln_2"]["b"]
        )

    gpt.final_norm.scale = assign(gpt.final_norm.scale, params["g"])
    gpt.final_norm.shift = assign(gpt.final_norm.shift, params["b"])
    gpt.out_head.weight = assign(gpt.out_head.weight, params["wte"])


# kit: the keys every block must have, checked before anything is loaded
_BLOCK_KEYS = [
    ("attn", "c_attn", "w"),
    ("attn", "c_attn", "b"),
    ("attn", "c_proj", "w"),
    ("attn", "c_proj", "b"),
    ("mlp", "c_fc", "w"),
    ("mlp", "c_fc", "b"),
    ("mlp", "c_proj", "w"),
    ("mlp", "c_proj", "b"),
    ("ln_1", "g"),
    ("ln_1", "b"),
    ("ln_2", "g"),
    ("ln_2", "b"),
]


def _check_params(gpt, params) -> None:  # kit: input checks with errors that say what is wrong
    """Raise a clear ValueError if `params` lacks an entry or has another block count than `gpt`."""
    paths = [("wte",), ("wpe",), ("g",), ("b",), ("blocks",)]
    for path in paths:
        _lookup(params, path)
    blocks = params["blocks"]
    if len(blocks) != len(gpt.trf_blocks):
        raise ValueError(
            f"checkpoint has {len(blocks)} transformer blocks, model has "
            f"{len(gpt.trf_blocks)}: build the model with the checkpoint's config, "
            "e.g. GPTModel(ftkit.presets.get_config('355M')) for GPT-2 355M"
        )
    if gpt.trf_blocks[0].att.W_query.bias is None:
        raise ValueError(
            "GPT-2 has query/key/value biases but the model was built with qkv_bias=False: "
            "build it with qkv_bias=True (book §5.5)"
        )
    for b in range(len(blocks)):
        for path in _BLOCK_KEYS:
            _lookup(params, ("blocks", b, *path))
        if np.shape(blocks[b]["attn"]["c_attn"]["w"])[-1] % 3:
            raise ValueError(
                f"params['blocks'][{b}]['attn']['c_attn']['w'] has shape "
                f"{np.shape(blocks[b]['attn']['c_attn']['w'])}: its last axis must be "
                "3 x emb_dim (query, key and value side by side)"
            )
    for name, array in _named_arrays(params):
        have = tuple(gpt.get_parameter(name).shape)
        if have != tuple(np.shape(array)):
            raise ValueError(f"{name}: model has {have}, checkpoint gives {tuple(np.shape(array))}")


def _named_arrays(params):  # kit: each model tensor's array as load_weights_into_gpt assigns it
    """(parameter name, array) pairs in the order `load_weights_into_gpt` assigns them."""
    yield "pos_emb.weight", params["wpe"]
    yield "tok_emb.weight", params["wte"]
    for b, block in enumerate(params["blocks"]):
        at = f"trf_blocks.{b}"
        attn = block["attn"]
        for part, w, bias in zip(
            ("W_query", "W_key", "W_value"),
            np.split(attn["c_attn"]["w"], 3, axis=-1),
            np.split(attn["c_attn"]["b"], 3, axis=-1),
            strict=True,
        ):
            yield f"{at}.att.{part}.weight", w.T
            yield f"{at}.att.{part}.bias", bias
        for label, layer in (
            ("att.out_proj", attn["c_proj"]),
            ("ff.layers.0", block["mlp"]["c_fc"]),
            ("ff.layers.2", block["mlp"]["c_proj"]),
        ):
            yield f"{at}.{label}.weight", layer["w"].T
            yield f"{at}.{label}.bias", layer["b"]
        for label, key in (("norm1", "ln_1"), ("norm2", "ln_2")):
            yield f"{at}.{label}.scale", block[key]["g"]
            yield f"{at}.{label}.shift", block[key]["b"]
    yield "final_norm.scale", params["g"]
    yield "final_norm.shift", params["b"]
    yield "out_head.weight", params["wte"]


def _lookup(params, path) -> None:  # kit
    node = params
    for depth, key in enumerate(path):
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            where = "params" + "".join(f"[{k!r}]" for k in path[: depth + 1])
            raise ValueError(
                f"{where} is missing: expected the book's GPT-2 params layout "
                "(as download_and_load_gpt2 returns)"
            ) from None
