"""Exercise: load OpenAI's pretrained GPT-2 weights into your GPTModel (book §5.5).

Downloading and reading the TensorFlow checkpoint is tooling, re-exported from the
reference below; `assign` and `load_weights_into_gpt` are yours to write.
`params` (from `download_and_load_gpt2`) looks like:

    params["wte"], params["wpe"]                  token / position embeddings
    params["blocks"][i]["attn"]["c_attn"]["w"|"b"] query, key, value side by side (d, 3d)
    params["blocks"][i]["attn"]["c_proj"]["w"|"b"] attention output projection
    params["blocks"][i]["mlp"]["c_fc"|"c_proj"]    feed-forward layers
    params["blocks"][i]["ln_1"|"ln_2"]["g"|"b"]    LayerNorm scale / shift
    params["g"], params["b"]                       final LayerNorm
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np  # noqa: F401  (np.split is handy for c_attn)
import torch
from torch import nn

from reference.weights import (  # noqa: F401  (tooling, not exercises)
    GPT2_FILES,
    GPT2_SIZES,
    cached_gpt2_files,
    check_model_size,
    download_and_load_gpt2,
    download_gpt2,
    from_hf_model,
    from_hf_state_dict,
    gpt2_assets,
    gpt2_dir,
    hf_config,
    load_gpt2_params_from_tf_ckpt,
    to_hf_model,
    to_hf_state_dict,
)


def assign(left: torch.Tensor, right, name: str = "tensor") -> nn.Parameter:
    raise NotImplementedError(
        "check right's shape equals left's (else ValueError naming `name`, both shapes), "
        "return nn.Parameter(torch.tensor(right)) in left's dtype/device (book §5.5)"
    )


def load_weights_into_gpt(gpt: nn.Module, params: Mapping) -> None:
    raise NotImplementedError(
        "assign wpe/wte to pos_emb/tok_emb; per block split c_attn w and b in 3 (np.split, "
        "axis=-1) for W_query/W_key/W_value, transpose every w (.T); out_head gets wte (book §5.5)"
    )
