"""Exercise: load OpenAI's pretrained GPT-2 weights into your GPTModel (book §5.5).

`params` (from `ftkit.io.gpt2.download_and_load_gpt2`, as the book's function of
the same name returns it) looks like:

    params["wte"], params["wpe"]                   token / position embeddings
    params["blocks"][b]["attn"]["c_attn"]["w"|"b"] query, key, value side by side (d, 3d)
    params["blocks"][b]["attn"]["c_proj"]["w"|"b"] attention output projection
    params["blocks"][b]["mlp"]["c_fc"|"c_proj"]    feed-forward layers
    params["blocks"][b]["ln_1"|"ln_2"]["g"|"b"]    LayerNorm scale / shift
    params["g"], params["b"]                       final LayerNorm
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (np.split is handy for c_attn)
import torch  # noqa: F401


def assign(left, right, *, name="tensor"):
    raise NotImplementedError(
        "check right's shape equals left's (else ValueError naming `name`, both shapes), "
        "return torch.nn.Parameter(torch.tensor(right)) in left's dtype/device (book §5.5)"
    )


def load_weights_into_gpt(gpt, params):
    raise NotImplementedError(
        "assign wpe/wte to pos_emb/tok_emb; per block split c_attn w and b in 3 (np.split, "
        "axis=-1) for W_query/W_key/W_value, transpose every w (.T); out_head gets wte (book §5.5)"
    )
