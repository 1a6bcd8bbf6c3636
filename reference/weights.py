"""OpenAI's pretrained GPT-2 weights: download, read the TensorFlow checkpoint, load into GPTModel.

The book's `gpt_download.py` (§5.5, Appendix D) fetches OpenAI's TensorFlow
checkpoint and turns it into a nested `params` dict; `load_weights_into_gpt`
copies those arrays into the book's `GPTModel`. This module does the same, with
verified downloads through `ftkit.io.assets`, and converts to and from the
Hugging Face `transformers` GPT-2 layout (an independent implementation to check
ours against). TensorFlow and transformers are imported only when needed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

GPT2_SIZES = ("124M", "355M", "774M", "1558M")
GPT2_FILES = (
    "checkpoint",
    "encoder.json",
    "hparams.json",
    "model.ckpt.data-00000-of-00001",
    "model.ckpt.index",
    "model.ckpt.meta",
    "vocab.bpe",
)
GPT2_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models/{size}/{file}"
GPT2_BACKUP_URL = "https://f001.backblazeb2.com/file/LLMs-from-scratch/gpt2/{size}/{file}"

# Byte sizes the book's own test suite (LLMs-from-scratch, ch05 tests) checks against
# OpenAI's server for 124M and 355M; the tokenizer files are the same for every size.
# 774M and 1558M sizes were not found published: None, so only Content-Length is checked.
_TOKENIZER_SIZES = {"encoder.json": 1042301, "vocab.bpe": 456318}
GPT2_FILE_SIZES: dict[str, dict[str, int | None]] = {
    "124M": {
        "checkpoint": 77,
        "hparams.json": 90,
        "model.ckpt.data-00000-of-00001": 497759232,
        "model.ckpt.index": 5215,
        "model.ckpt.meta": 471155,
        **_TOKENIZER_SIZES,
    },
    "355M": {
        "checkpoint": 77,
        "hparams.json": 91,
        "model.ckpt.data-00000-of-00001": 1419292672,
        "model.ckpt.index": 10399,
        "model.ckpt.meta": 926519,
        **_TOKENIZER_SIZES,
    },
    "774M": {**dict.fromkeys(GPT2_FILES), **_TOKENIZER_SIZES},
    "1558M": {**dict.fromkeys(GPT2_FILES), **_TOKENIZER_SIZES},
}

# SHA-256s. The tokenizer files' are the ones tiktoken pins for its `gpt2` encoding
# (also in /work/shared/data/README.md). The 124M checkpoint files' come from a public
# download script (its encoder.json/vocab.bpe hashes agree with tiktoken's, and its
# data-file hash with a second, independent listing of the 497,759,232-byte file).
# No published hashes were found for 355M/774M/1558M checkpoint files: None there,
# so those are checked by size (above, where known) and Content-Length only.
_TOKENIZER_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
GPT2_FILE_SHA256: dict[str, dict[str, str | None]] = {
    "124M": {
        "checkpoint": "dd1b025d2e155283f5e300ce95bf6d5b6bc0f7fe010db73daa6975eb896ab9cb",
        "hparams.json": "d9d56e4121c427164e0c55c6f03c08e1daf9002b9b672825112d19097b680318",
        "model.ckpt.data-00000-of-00001": "2060c885360cc0cf41d7a6dbc4d24b5127aae20260c8b5ae521b5a6578407118",
        "model.ckpt.index": "71916f763f9746f9b2a06b12d91996cf1084ae008d0424543d39391c5f2dc687",
        "model.ckpt.meta": "4668c448fa11531fd6700460487f73e82d3272960cea942252f8744bf225c77b",
        **_TOKENIZER_SHA256,
    },
    **{
        size: {**dict.fromkeys(GPT2_FILES), **_TOKENIZER_SHA256}
        for size in ("355M", "774M", "1558M")
    },
}

TF_HINT = "pip install 'llm-finetune-kit[tf]'"
HF_HINT = "pip install 'llm-finetune-kit[hf]'"


# ---------------------------------------------------------------------------
# Downloading OpenAI's files (book Appendix D's gpt_download.py)
# ---------------------------------------------------------------------------


def check_model_size(model_size: str) -> str:
    """The canonical size tag ("124m" -> "124M"); a clear error listing the sizes otherwise."""
    size = str(model_size).strip().upper()
    if size not in GPT2_SIZES:
        raise ValueError(
            f"unknown GPT-2 size {model_size!r}; OpenAI published {', '.join(GPT2_SIZES)}"
        )
    return size


def gpt2_dir(model_size: str, models_dir: str | os.PathLike | None = None) -> Path:
    """Folder holding a size's files: `<models_dir>/<size>`, default `<cache>/gpt2/<size>`."""
    size = check_model_size(model_size)
    if models_dir is None:
        from ftkit.io.assets import cache_dir

        return cache_dir() / "gpt2" / size
    return Path(models_dir).expanduser().resolve() / size


def gpt2_assets(model_size: str, models_dir: str | os.PathLike | None = None) -> list:
    """The seven files of one GPT-2 size as `ftkit.io.assets.Asset`s, with known sizes/hashes."""
    from ftkit.io.assets import Asset

    size = check_model_size(model_size)
    # The assets cache puts a file at cache_dir() / subdir; pathlib makes an absolute
    # subdir win over cache_dir(), which is how a custom models_dir is honoured.
    subdir = f"gpt2/{size}" if models_dir is None else str(gpt2_dir(size, models_dir))
    return [
        Asset(
            name=f"gpt2-{size}-{file}",
            url=GPT2_URL.format(size=size, file=file),
            backup_url=GPT2_BACKUP_URL.format(size=size, file=file),
            sha256=GPT2_FILE_SHA256[size][file],
            size=GPT2_FILE_SIZES[size][file],
            subdir=subdir,
        )
        for file in GPT2_FILES
    ]


def download_gpt2(
    model_size: str, models_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """Fetch (or find cached) the files of one GPT-2 size; return their folder (book Appendix D).

    Each file is verified (SHA-256 where known, else byte size / Content-Length) and
    written atomically by `ftkit.io.assets.fetch`, so an interrupted download is
    resumed by running it again: finished files are kept, half ones never land.
    """
    from ftkit.io.assets import fetch

    paths = [fetch(asset, progress=progress) for asset in gpt2_assets(model_size, models_dir)]
    return paths[0].parent


def cached_gpt2_files(model_size: str, models_dir: str | os.PathLike | None = None) -> list[str]:
    """Which of a size's seven files are present in its folder (no hashing; cheap)."""
    folder = gpt2_dir(model_size, models_dir)
    return [file for file in GPT2_FILES if (folder / file).is_file()]


def download_and_load_gpt2(model_size: str, models_dir: str | os.PathLike | None = None):
    """Download OpenAI's GPT-2 `model_size` and read it: `(settings, params)` (book §5.5).

    `settings` is hparams.json (n_vocab, n_ctx, n_embd, n_head, n_layer); `params` the
    nested arrays `load_weights_into_gpt` takes. `models_dir` defaults to the kit's
    cache (`<FTKIT_HOME or user cache>/gpt2/<size>`); with it, files go to
    `<models_dir>/<size>/` as in the book.
    """
    folder = download_gpt2(model_size, models_dir)
    hparams = folder / "hparams.json"
    try:
        settings = json.loads(hparams.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read GPT-2 settings from {hparams}: {err}") from err
    missing = [k for k in ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer") if k not in settings]
    if missing:
        raise ValueError(f"{hparams} lacks {missing}")
    # OpenAI's `checkpoint` file names "model.ckpt"; use that prefix directly rather than
    # trusting paths written inside it.
    params = load_gpt2_params_from_tf_ckpt(folder / "model.ckpt", settings)
    return settings, params


# ---------------------------------------------------------------------------
# Loading the book's params dict into GPTModel (book §5.5)
# ---------------------------------------------------------------------------


def assign(left: torch.Tensor, right, name: str = "tensor") -> nn.Parameter:
    """A new Parameter holding `right`, after checking it has `left`'s shape (book §5.5).

    `name` is the model's name for the tensor, so a mismatch says which one is wrong.
    The result takes `left`'s dtype and device, so loading does not move the model.
    """
    value = right.detach() if isinstance(right, torch.Tensor) else torch.tensor(np.asarray(right))
    if tuple(left.shape) != tuple(value.shape):
        raise ValueError(
            f"{name}: model has {tuple(left.shape)}, checkpoint gives {tuple(value.shape)}"
        )
    return nn.Parameter(value.to(dtype=left.dtype, device=left.device).clone())


def _param(params: Mapping, *path):
    """`params[path[0]][path[1]]...`, with an error naming the missing entry."""
    node = params
    for depth, key in enumerate(path):
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            where = "params" + "".join(f"[{k!r}]" for k in path[: depth + 1])
            raise ValueError(
                f"{where} is missing: expected the book's GPT-2 params layout "
                "(as load_gpt2_params_from_tf_ckpt returns)"
            ) from None
    return node


def _split_qkv(weight, name: str) -> tuple:
    """Split OpenAI's fused query/key/value array along its last axis into three."""
    array = weight.detach().cpu().numpy() if isinstance(weight, torch.Tensor) else weight
    array = np.asarray(array)
    if array.shape[-1] % 3 != 0:
        raise ValueError(
            f"{name}: shape {array.shape} does not end in 3 x emb_dim "
            "(query, key and value side by side)"
        )
    return tuple(np.split(array, 3, axis=-1))


def load_weights_into_gpt(gpt: nn.Module, params: Mapping) -> None:
    """Copy OpenAI's GPT-2 arrays into the book's GPTModel, in place (book §5.5).

    OpenAI stores linear layers as (in, out) matrices (TensorFlow's convention) and
    the query/key/value projections fused in one `c_attn` array; the book's model
    uses nn.Linear's (out, in) layout with separate W_query/W_key/W_value, so each
    weight is transposed and c_attn split in three. GPT-2 reuses the token
    embedding as output layer (weight tying), so out_head gets a copy of wte.
    """
    blocks = _param(params, "blocks")
    if len(blocks) != len(gpt.trf_blocks):
        raise ValueError(
            f"checkpoint has {len(blocks)} transformer blocks, model has "
            f"{len(gpt.trf_blocks)}: build the model with the checkpoint's config, "
            "e.g. GPTModel(get_config('355M')) for GPT-2 355M"
        )
    gpt.pos_emb.weight = assign(gpt.pos_emb.weight, _param(params, "wpe"), "pos_emb.weight")
    gpt.tok_emb.weight = assign(gpt.tok_emb.weight, _param(params, "wte"), "tok_emb.weight")

    for b, block in enumerate(gpt.trf_blocks):
        att, ff, at = block.att, block.ff, f"trf_blocks.{b}"
        c_attn = ("blocks", b, "attn", "c_attn")
        q_w, k_w, v_w = _split_qkv(_param(params, *c_attn, "w"), f"blocks[{b}].attn.c_attn.w")
        q_b, k_b, v_b = _split_qkv(_param(params, *c_attn, "b"), f"blocks[{b}].attn.c_attn.b")
        for linear, w, bias, short in (
            (att.W_query, q_w, q_b, "W_query"),
            (att.W_key, k_w, k_b, "W_key"),
            (att.W_value, v_w, v_b, "W_value"),
        ):
            linear.weight = assign(linear.weight, w.T, f"{at}.att.{short}.weight")
            if linear.bias is not None:
                linear.bias = assign(linear.bias, bias, f"{at}.att.{short}.bias")

        for linear, path, label in (
            (att.out_proj, ("attn", "c_proj"), "att.out_proj"),
            (ff.layers[0], ("mlp", "c_fc"), "ff.layers.0"),
            (ff.layers[2], ("mlp", "c_proj"), "ff.layers.2"),
        ):
            w = np.asarray(_param(params, "blocks", b, *path, "w"))
            linear.weight = assign(linear.weight, w.T, f"{at}.{label}.weight")
            linear.bias = assign(
                linear.bias, _param(params, "blocks", b, *path, "b"), f"{at}.{label}.bias"
            )

        for norm, ln, label in ((block.norm1, "ln_1", "norm1"), (block.norm2, "ln_2", "norm2")):
            norm.scale = assign(
                norm.scale, _param(params, "blocks", b, ln, "g"), f"{at}.{label}.scale"
            )
            norm.shift = assign(
                norm.shift, _param(params, "blocks", b, ln, "b"), f"{at}.{label}.shift"
            )

    gpt.final_norm.scale = assign(gpt.final_norm.scale, _param(params, "g"), "final_norm.scale")
    gpt.final_norm.shift = assign(gpt.final_norm.shift, _param(params, "b"), "final_norm.shift")
    # A copy, as in the book: fine-tuning then updates out_head and tok_emb separately,
    # which the book's ch. 6-7 numbers assume.
    gpt.out_head.weight = assign(gpt.out_head.weight, _param(params, "wte"), "out_head.weight")


# ---------------------------------------------------------------------------
# OpenAI's TensorFlow checkpoint (book Appendix D's gpt_download.py)
# ---------------------------------------------------------------------------


def _import_tensorflow():
    """TensorFlow, imported on first use (it takes seconds), or a message saying how to get it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's start-up chatter out
    try:
        import tensorflow as tf
    except ImportError as err:
        raise ImportError(
            "reading OpenAI's GPT-2 checkpoint needs TensorFlow, which is not installed; "
            f"install the tf extra: {TF_HINT}"
        ) from err
    return tf


def load_gpt2_params_from_tf_ckpt(ckpt_path: str | os.PathLike, settings: Mapping) -> dict:
    """Read OpenAI's TensorFlow checkpoint into the book's nested params dict (book §5.5).

    Variable `model/h3/attn/c_attn/w` becomes `params["blocks"][3]["attn"]["c_attn"]["w"]`;
    `model/wte`, `model/wpe`, `model/ln_f/g|b` become `params["wte"]`, `["wpe"]`, `["g"]`,
    `["b"]`. Conv1D weights are stored (1, in, out); the leading 1 is dropped.
    `settings` is the checkpoint's hparams.json (`n_layer` is used).
    """
    tf = _import_tensorflow()
    ckpt = str(ckpt_path)
    n_layer = int(settings["n_layer"])
    try:
        variables = tf.train.list_variables(ckpt)
    except Exception as err:  # TF raises its own NotFoundError/DataLossError types
        raise FileNotFoundError(
            f"cannot read a TensorFlow checkpoint at {ckpt}: {err}. It needs the files "
            f"{ckpt}.index and {ckpt}.data-00000-of-00001 side by side"
        ) from err

    params: dict = {"blocks": [{} for _ in range(n_layer)]}
    for name, _shape in variables:
        parts = name.split("/")
        if parts[0] != "model" or len(parts) < 2:
            continue  # e.g. optimizer state; GPT-2's weights all live under model/
        array = tf.train.load_variable(ckpt, name)
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        target, keys = params, parts[1:]
        if keys[0].startswith("h") and keys[0][1:].isdigit():
            layer = int(keys[0][1:])
            if layer >= n_layer:
                raise ValueError(
                    f"{ckpt}: variable {name} is block {layer}, but hparams.json says "
                    f"n_layer={n_layer}"
                )
            target, keys = params["blocks"][layer], keys[1:]
        elif keys[0] == "ln_f":
            keys = keys[1:]  # the book keeps the final LayerNorm at params["g"], params["b"]
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = np.array(array)
    if "wte" not in params:
        raise ValueError(f"{ckpt}: no variable model/wte; is this an OpenAI GPT-2 checkpoint?")
    return params


# ---------------------------------------------------------------------------
# Hugging Face transformers interop (GPT2LMHeadModel)
# ---------------------------------------------------------------------------

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
