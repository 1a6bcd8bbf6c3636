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
    if tuple(left.shape) != tuple(np.shape(right)):
        raise ValueError(
            f"{name}: model has {tuple(left.shape)}, checkpoint gives {tuple(np.shape(right))}"
        )
    # kit: the model's dtype and device, so loading moves nothing (the book: float32, CPU)
    return torch.nn.Parameter(torch.tensor(right).to(dtype=left.dtype, device=left.device))


def load_weights_into_gpt(gpt, params):
    """Copy OpenAI's GPT-2 arrays into the book's GPTModel, in place (book §5.5)."""
    _check_params(gpt, params)  # kit: a clear error for a wrong model or params layout
    gpt.pos_emb.weight = assign(gpt.pos_emb.weight, params["wpe"], name="pos_emb.weight")
    gpt.tok_emb.weight = assign(gpt.tok_emb.weight, params["wte"], name="tok_emb.weight")

    for b in range(len(params["blocks"])):
        block, at = gpt.trf_blocks[b], f"trf_blocks.{b}"  # kit: `at` names tensors in errors
        q_w, k_w, v_w = np.split(params["blocks"][b]["attn"]["c_attn"]["w"], 3, axis=-1)
        block.att.W_query.weight = assign(
            block.att.W_query.weight, q_w.T, name=f"{at}.att.W_query.weight"
        )
        block.att.W_key.weight = assign(
            block.att.W_key.weight, k_w.T, name=f"{at}.att.W_key.weight"
        )
        block.att.W_value.weight = assign(
            block.att.W_value.weight, v_w.T, name=f"{at}.att.W_value.weight"
        )

        q_b, k_b, v_b = np.split(params["blocks"][b]["attn"]["c_attn"]["b"], 3, axis=-1)
        block.att.W_query.bias = assign(block.att.W_query.bias, q_b, name=f"{at}.att.W_query.bias")
        block.att.W_key.bias = assign(block.att.W_key.bias, k_b, name=f"{at}.att.W_key.bias")
        block.att.W_value.bias = assign(block.att.W_value.bias, v_b, name=f"{at}.att.W_value.bias")

        # The book assigns these layers one statement each; the statements differ only in
        # which layer and which params key, so they are a loop here (same assignments).
        for linear, (group, key), label in (
            (block.att.out_proj, ("attn", "c_proj"), "att.out_proj"),
            (block.ff.layers[0], ("mlp", "c_fc"), "ff.layers.0"),
            (block.ff.layers[2], ("mlp", "c_proj"), "ff.layers.2"),
        ):
            layer = params["blocks"][b][group][key]
            linear.weight = assign(linear.weight, layer["w"].T, name=f"{at}.{label}.weight")
            linear.bias = assign(linear.bias, layer["b"], name=f"{at}.{label}.bias")

        for norm, key, label in ((block.norm1, "ln_1", "norm1"), (block.norm2, "ln_2", "norm2")):
            ln = params["blocks"][b][key]
            norm.scale = assign(norm.scale, ln["g"], name=f"{at}.{label}.scale")
            norm.shift = assign(norm.shift, ln["b"], name=f"{at}.{label}.shift")

    gpt.final_norm.scale = assign(gpt.final_norm.scale, params["g"], name="final_norm.scale")
    gpt.final_norm.shift = assign(gpt.final_norm.shift, params["b"], name="final_norm.shift")
    # GPT-2 ties its output layer to the token embedding: out_head gets a copy of wte.
    gpt.out_head.weight = assign(gpt.out_head.weight, params["wte"], name="out_head.weight")


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
            "e.g. GPTModel(get_config('355M')) for GPT-2 355M"
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
