"""A tiny GPT-2 the tests build: OpenAI-layout arrays and the files each weights source serves.

The same random arrays, under GPT-2's TensorFlow variable names and shapes, become
a TensorFlow checkpoint (OpenAI), a `GPT2LMHeadModel` saved with `save_pretrained`
(Hugging Face safetensors) and a GPTModel state dict (the book's `.pth`), so every
source must load to the same logits. The oracle is Hugging Face's independent GPT-2
given the arrays as they are (its Conv1D layout is OpenAI's).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ftkit.presets import get_config

D, N_LAYER, N_HEAD, VOCAB, CTX = 16, 2, 4, 97, 24
SETTINGS = {"n_vocab": VOCAB, "n_ctx": CTX, "n_embd": D, "n_head": N_HEAD, "n_layer": N_LAYER}
OPENAI_FILES = (
    "checkpoint",
    "encoder.json",
    "hparams.json",
    "model.ckpt.data-00000-of-00001",
    "model.ckpt.index",
    "model.ckpt.meta",
    "vocab.bpe",
)


def tiny_cfg(ref, **overrides) -> dict:
    shape = {"vocab_size": VOCAB, "context_length": CTX, "emb_dim": D}
    return get_config("tiny", **{**shape, "n_heads": N_HEAD, "n_layers": N_LAYER, **overrides})


def openai_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays under GPT-2's TensorFlow variable names and shapes (Conv1D: (1, in, out))."""
    rng = np.random.default_rng(seed)

    def r(*shape):
        return rng.normal(0, 0.2, shape).astype(np.float32)

    arrays = {"model/wte": r(VOCAB, D), "model/wpe": r(CTX, D)}
    for i in range(N_LAYER):
        h = f"model/h{i}"
        arrays |= {
            f"{h}/attn/c_attn/w": r(1, D, 3 * D),
            f"{h}/attn/c_attn/b": r(3 * D),
            f"{h}/attn/c_proj/w": r(1, D, D),
            f"{h}/attn/c_proj/b": r(D),
            f"{h}/mlp/c_fc/w": r(1, D, 4 * D),
            f"{h}/mlp/c_fc/b": r(4 * D),
            f"{h}/mlp/c_proj/w": r(1, 4 * D, D),
            f"{h}/mlp/c_proj/b": r(D),
            f"{h}/ln_1/g": 1 + r(D),
            f"{h}/ln_1/b": r(D),
            f"{h}/ln_2/g": 1 + r(D),
            f"{h}/ln_2/b": r(D),
        }
    return arrays | {"model/ln_f/g": 1 + r(D), "model/ln_f/b": r(D)}


def book_params(arrays) -> dict:
    """The book's params dict built from the arrays by hand (no TensorFlow)."""
    params: dict = {"blocks": [{} for _ in range(N_LAYER)]}
    for name, array in arrays.items():
        parts = name.split("/")[1:]
        target = params
        if parts[0].startswith("h"):
            target, parts = params["blocks"][int(parts[0][1:])], parts[1:]
        elif parts[0] == "ln_f":
            parts = parts[1:]
        for key in parts[:-1]:
            target = target.setdefault(key, {})
        target[parts[-1]] = np.squeeze(array, axis=0) if array.ndim == 3 else array
    return params


def hf_state_dict(arrays) -> dict[str, torch.Tensor]:
    """The arrays under Hugging Face's GPT2LMHeadModel names (`transformer.h.0.attn.c_attn.weight`)."""
    sd = {}
    for name, array in arrays.items():
        key = name.removeprefix("model/").replace("/", ".")
        key = key.replace(".w", ".weight").replace(".g", ".weight").replace(".b", ".bias")
        if key.startswith("h"):
            key = "h." + key[1:]
        key = {"wte": "wte.weight", "wpe": "wpe.weight"}.get(key, key)
        sd["transformer." + key] = torch.from_numpy(
            np.squeeze(array, axis=0) if array.ndim == 3 else array
        )
    return sd


def hf_model_from_arrays(arrays):
    """Hugging Face's GPT-2 given OpenAI's arrays as they are (skips without transformers)."""
    transformers = pytest.importorskip("transformers", reason="needs the hf extra")
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=CTX,
        n_embd=D,
        n_layer=N_LAYER,
        n_head=N_HEAD,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    missing, unexpected = model.load_state_dict(hf_state_dict(arrays), strict=False)
    assert not unexpected, unexpected
    assert all(
        k == "lm_head.weight" or k.endswith((".attn.bias", ".attn.masked_bias")) for k in missing
    )
    model.tie_weights()
    return model


def write_tf_checkpoint(folder: Path, arrays) -> Path:
    """OpenAI's seven files for the tiny model in `folder` (skips without TensorFlow)."""
    tf = pytest.importorskip("tensorflow", reason="needs the tf extra")
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(arrays)
    tf.raw_ops.SaveV2(
        prefix=str(folder / "model.ckpt"),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(arrays[n]) for n in names],
    )
    (folder / "checkpoint").write_text(
        'model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n'
    )
    (folder / "hparams.json").write_text(json.dumps(SETTINGS))
    (folder / "encoder.json").write_text('{"!": 0}')  # tokenizer files: not read by this path
    (folder / "vocab.bpe").write_text("#version: 0.2\n")
    (folder / "model.ckpt.meta").write_text("graph definition, not needed to read variables")
    return folder


def write_hf_files(folder: Path, arrays, *, via_transformers: bool = True) -> Path:
    """config.json and model.safetensors for the tiny model, as a Hugging Face `gpt2` repo holds them.

    `via_transformers`: `GPT2LMHeadModel.save_pretrained` (skips without transformers);
    else the file is written with safetensors alone, under the key names of the `gpt2`
    repositories' own file (no `transformer.` prefix, causal-mask buffers included).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if via_transformers:
        hf_model_from_arrays(arrays).save_pretrained(folder)
        return folder
    from safetensors.torch import save_file

    sd = {k.removeprefix("transformer."): v for k, v in hf_state_dict(arrays).items()}
    for i in range(N_LAYER):
        sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(CTX, CTX)).view(1, 1, CTX, CTX)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    config = {
        "model_type": "gpt2",
        "vocab_size": VOCAB,
        "n_positions": CTX,
        "n_ctx": CTX,
        "n_embd": D,
        "n_head": N_HEAD,
        "n_layer": N_LAYER,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def write_book_pth(path: Path, arrays, ref) -> Path:
    """The book's converted-weights file for the tiny model: a GPTModel state dict saved with torch.save."""
    from reference.weights import load_weights_into_gpt

    gpt = ref.GPTModel(tiny_cfg(ref))
    load_weights_into_gpt(gpt, book_params(arrays))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(gpt.state_dict(), path)
    return path
