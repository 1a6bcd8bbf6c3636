"""OpenAI's TensorFlow GPT-2 checkpoint read into the book's nested `params` dict (book §5.5, Appendix D).

TensorFlow is imported on first use only (it takes seconds, and the base install
has none: it comes with the `tf` extra). `ftkit.io.gpt2` downloads the files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

TF_HINT = "pip install 'llm-finetune-kit[tf]'"


def import_tensorflow():
    """TensorFlow, imported on first use, or an ImportError saying how to get it (or avoid it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's start-up chatter out
    try:
        import tensorflow as tf
    except ImportError as err:
        raise ImportError(
            "reading OpenAI's GPT-2 checkpoint needs TensorFlow, which is not installed; "
            f"install the tf extra: {TF_HINT} (or use a source without TensorFlow: "
            "`ftkit weights fetch SIZE --source hf`)"
        ) from err
    return tf


def load_gpt2_params_from_tf_ckpt(ckpt_path: str | os.PathLike, settings: Mapping) -> dict:
    """Read OpenAI's TensorFlow checkpoint into the book's nested params dict (book §5.5).

    Variable `model/h3/attn/c_attn/w` becomes `params["blocks"][3]["attn"]["c_attn"]["w"]`;
    `model/wte`, `model/wpe`, `model/ln_f/g|b` become `params["wte"]`, `["wpe"]`, `["g"]`,
    `["b"]`. Conv1D weights are stored (1, in, out); the leading 1 is dropped.
    `settings` is the checkpoint's hparams.json (`n_layer` is used).
    """
    tf = import_tensorflow()
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
