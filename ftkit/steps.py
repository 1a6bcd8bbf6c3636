"""Step-level diagnosis: which step of the book's listing a learner's function first computes otherwise.

`ftkit.diagnose` finds the first *module* whose output differs; this module finds the
first *step inside* a function or module and says how it differs:

- `trace` records every torch operation of a learner's call (a `TorchFunctionMode`),
  so the learner's intermediate values can be looked up whatever their variables,
  attributes or statement order are called;
- the book's listing is re-run step by step here (`attention_chain`, `layernorm_chain`,
  `generate_book`) with the learner's own weights, and its intermediates are looked up
  in the trace: the first one missing is the step that differs;
- that step is then described from the learner's values themselves (which positions the
  mask hides, by what the scores are divided, which tokens the crop keeps), and known
  mistake transforms of the book's code (`hypotheses`) are run on the same input: when
  exactly one reproduces the learner's output, the message says so.

Every function works on a copy of the module and leaves the global RNG as it was.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

ATOL, RTOL = 1e-5, 1e-4


# --- recording the learner's operations --------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One torch operation of a traced call: its name, tensor arguments and tensor outputs."""

    name: str
    args: tuple
    kwargs: dict
    outputs: tuple[torch.Tensor, ...]


def _tensors(value) -> tuple[torch.Tensor, ...]:
    if isinstance(value, torch.Tensor):
        return (value.detach().clone(),)
    if isinstance(value, (tuple, list)):
        return tuple(t for v in value for t in _tensors(v))
    return ()


class _Recorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[Op] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        if name not in ("__get__", "__set__", "dim", "size"):
            self.ops.append(Op(name, args, kwargs, _tensors(out)))
        return out


def trace(fn: Callable, *args, **kwargs) -> tuple[object, list[Op], BaseException | None]:
    """Call `fn(*args, **kwargs)` recording every torch operation; (result, ops, error)."""
    recorder = _Recorder()
    result, error = None, None
    with torch.no_grad(), recorder:
        try:
            result = fn(*args, **kwargs)
        except Exception as err:  # a learner's code may crash: the ops until then still count
            error = err
    return result, recorder.ops, error


def close(a: torch.Tensor, e: torch.Tensor) -> bool:
    """`a` holds `e`'s values (same shape, within tolerance; equal infinities agree)."""
    if tuple(a.shape) != tuple(e.shape) or not (a.is_floating_point() and e.is_floating_point()):
        return tuple(a.shape) == tuple(e.shape) and bool(torch.equal(a, e))
    return bool(torch.allclose(a.double(), e.double(), atol=ATOL, rtol=RTOL, equal_nan=False))


def _layouts(value: torch.Tensor) -> list[torch.Tensor]:
    """`value` and the layouts a learner may keep it in (heads before or after tokens)."""
    forms = [value]
    if value.dim() == 4:
        forms.append(value.transpose(1, 2))
    return forms


def seen(value: torch.Tensor, ops: Sequence[Op]) -> Op | None:
    """The first traced operation whose output holds `value` (in any of its layouts)."""
    for op in ops:
        for out in op.outputs:
            for form in _layouts(value):
                if out.numel() == form.numel() and close(out.reshape(form.shape), form):
                    return op
    return None


# --- multi-head attention (§3.6) ---------------------------------------------------------------


def linear_weights(module: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The module's (weight, bias) pairs in definition order, whatever the attributes are called."""
    pairs: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    for _, param in module.named_parameters():
        p = param.detach()
        if p.dim() == 2:
            pairs.append((p, None))
        elif p.dim() == 1 and pairs and pairs[-1][1] is None and p.numel() == pairs[-1][0].shape[0]:
            pairs[-1] = (pairs[-1][0], p)
    return pairs


def _lin(x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
    return torch.nn.functional.linear(x, wb[0], wb[1])


def attention_chain(
    x: torch.Tensor, weights: Sequence, num_heads: int, **change
) -> dict[str, torch.Tensor]:
    """The book's §3.6 forward step by step (eval mode); `change` applies one known mistake."""
    b, t, _ = x.shape
    q, k, v, o = (_lin(x, wb) for wb in weights[:3]), None, None, weights[3]
    q, k, v = list(q)
    d_out = q.shape[-1]
    hd = d_out // num_heads

    def split(z):
        return z.view(b, t, num_heads, hd).transpose(1, 2)

    steps: dict[str, torch.Tensor] = {}
    q, k, v = split(q), split(k), split(v)
    steps["queries"] = q
    scores = q @ k.transpose(2, 3)
    steps["scores"] = scores
    ones = torch.ones(t, t)
    mask = (torch.tril if change.get("tril") else torch.triu)(ones, diagonal=change.get("diag", 1))
    if change.get("no_mask"):
        mask = torch.zeros(t, t)
    masked = scores.masked_fill(mask.bool(), change.get("fill", -torch.inf))
    steps["masked scores"] = masked
    scale = change.get("scale", hd**0.5)
    after = change.get("scale_after_softmax", False)
    scaled = masked if after else masked / scale
    steps["scaled scores"] = scaled
    w = torch.softmax(scaled, dim=change.get("softmax_dim", -1))
    if after:
        w = w / scale
    steps["attention weights"] = w
    ctx = w @ v
    steps["context"] = ctx
    merged = (
        ctx.contiguous().view(b, t, d_out)
        if change.get("no_transpose")
        else ctx.transpose(1, 2).contiguous().view(b, t, d_out)
    )
    steps["merged heads"] = merged
    steps["output"] = merged if change.get("no_out_proj") else _lin(merged, o)
    return steps


ATTENTION_STEPS = {
    "queries": "the per-head queries: W_query(x).view(b, tokens, heads, head_dim).transpose(1, 2)",
    "scores": "the scores queries @ keys.transpose(2, 3)",
    "masked scores": "the causal mask: scores above the diagonal (triu(..., diagonal=1)) "
    "filled with -inf",
    "scaled scores": "the scores divided by sqrt(head_dim)",
    "attention weights": "softmax over the last dimension (the keys)",
    "context": "the context vectors attn_weights @ values",
    "merged heads": "heads merged with context.transpose(1, 2).contiguous().view(b, tokens, d_out)",
    "output": "the output projection out_proj(context)",
}

# Known mistakes of §3.6: (what the learner did, the change to the book's steps).
ATTENTION_HYPOTHESES: list[tuple[str, dict]] = [
    ("the mask built with diagonal=0 (each token hidden from itself)", {"diag": 0}),
    ("the mask built with diagonal=2 (a diagonal offset: each token sees the next)", {"diag": 2}),
    ("tril instead of triu (the earlier tokens hidden, not the later)", {"tril": True}),
    ("masked scores filled with 0 instead of -inf", {"fill": 0.0}),
    ("no causal mask", {"no_mask": True}),
    ("the scale applied after the softmax", {"scale_after_softmax": True}),
    ("heads merged without transpose(1, 2)", {"no_transpose": True}),
    ("no output projection (out_proj)", {"no_out_proj": True}),
]


def _scores_split_by_view(x: torch.Tensor, weights: Sequence, num_heads: int) -> torch.Tensor:
    """The scores of heads split by a plain view (b, heads, tokens, head_dim), no transpose."""
    b, t, _ = x.shape
    q, k = (_lin(x, wb) for wb in weights[:2])
    hd = q.shape[-1] // num_heads
    q, k = q.reshape(b, num_heads, t, hd), k.reshape(b, num_heads, t, hd)
    return q @ k.transpose(2, 3)


def _where_ops(ops: Sequence[Op], name: str) -> list[Op]:
    return [op for op in ops if op.name == name]


def _softmax_dim(op: Op) -> int | None:
    dim = op.kwargs.get("dim", op.args[1] if len(op.args) > 1 else None)
    return int(dim) if isinstance(dim, int) else None


def _mask_words(hidden: torch.Tensor, book_hidden: torch.Tensor) -> str | None:
    """How the learner's hidden (query, key) positions differ from the book's causal mask."""
    sees = (book_hidden & ~hidden).nonzero().tolist()
    hides = (hidden & ~book_hidden).nonzero().tolist()
    if sees and not hides:
        i, j = sees[0]
        if len(sees) == int(book_hidden.sum()):
            how = "no causal mask: every position sees the later ones"
        elif all(c - r == 1 for r, c in sees):
            how = "diagonal offset: triu(..., diagonal=2) where the book uses diagonal=1"
        else:
            how = "fewer positions masked than the book's triu(..., diagonal=1)"
        return f"the mask lets position {i} see position {j} ({how})"
    if hides:
        i, j = hides[0]
        earlier = [(r, c) for r, c in hides if c < r]
        if earlier:
            i, j = earlier[0]
            return (
                f"the mask hides the earlier position {j} from position {i} (tril for triu?): "
                "only later tokens are hidden"
            )
        if i == j:
            return f"the mask hides position {i} from itself (diagonal=0): a token must see itself"
        if j < i:
            return (
                f"the mask hides the earlier position {j} from position {i} (tril for triu?): "
                "only later tokens are hidden"
            )
        return f"the mask hides position {j} from position {i}, which the book lets it see"
    return None


def _ratio(book: torch.Tensor, mine: torch.Tensor, where: torch.Tensor) -> float | None:
    """The constant c with book = c * mine on `where`, if there is one."""
    b, m = book[where].double(), mine[where].double()
    ok = m.abs() > 1e-6
    if not bool(ok.any()):
        return None
    ratios = b[ok] / m[ok]
    c = float(ratios.median())
    return (
        c
        if bool(torch.allclose(ratios, torch.full_like(ratios, c), rtol=1e-3, atol=1e-6))
        else None
    )


def _name_scale(c: float, hd: int, d_out: int) -> str:
    for value, label in (
        (1.0, "1 (not scaled)"),
        (hd, f"{hd} (head_dim itself)"),
        (d_out, f"{d_out} (d_out)"),
        (d_out**0.5, f"sqrt({d_out}) = {d_out**0.5:g} (sqrt of d_out)"),
        (1 / hd**0.5, f"1/sqrt({hd}) (multiplied instead of divided)"),
    ):
        if math.isclose(c, value, rel_tol=1e-3):
            return label
    return f"{c:.4g}"


def describe_attention(
    module: nn.Module, x: torch.Tensor, num_heads: int, *, dropout_expected: bool = True
) -> str | None:
    """The first step of §3.6 whose value the learner's attention does not compute, and how.

    `module` is the learner's attention (any attribute names; Linear weights in the book's
    order W_query, W_key, W_value, out_proj). None when every step agrees or the module's
    weights cannot be read that way.
    """
    work = copy.deepcopy(module).eval()
    weights = linear_weights(work)
    if len(weights) < 4 or x.dim() != 3:
        return None
    try:
        book = attention_chain(x, weights, num_heads)
    except Exception:  # noqa: BLE001 - weights of other shapes: no step diagnosis
        return None
    out, ops, error = trace(work, x)
    if error is not None:
        from ftkit.teach import teach_error  # the lessons for raw errors live there

        return teach_error(error, ["MultiHeadAttention"])
    # Dropout (traced in eval mode too): which value the learner's dropout is given.
    for op in _where_ops(ops, "dropout"):
        given = op.args[0] if op.args else None
        if not isinstance(given, torch.Tensor):
            continue
        for step in ("context", "merged heads", "output", "scores", "masked scores"):
            if seen(book[step], [Op("", (), {}, (given,))]) is not None:
                return (
                    f"dropout is applied to the {step if step != 'merged heads' else 'context vectors'}"
                    " (shape " + str(list(given.shape)) + "), the book applies it to the attention "
                    "weights: attn_weights = self.dropout(attn_weights) before @ values"
                )
    if error is None and isinstance(out, torch.Tensor) and close(out, book["output"]):
        return None
    t = x.shape[1]
    hd = book["queries"].shape[-1]
    d_out = hd * num_heads
    agreed = "the input"
    for step in ("queries", "scores"):
        if seen(book[step], ops) is None and not (
            step == "scores" and seen(book["scores"] / hd**0.5, ops) is not None
        ):
            if step == "scores" and seen(_scores_split_by_view(x, weights, num_heads), ops):
                return (
                    "the heads are split with .view(b, heads, tokens, head_dim), which mixes "
                    "tokens and heads: the book views (b, tokens, heads, head_dim) and then "
                    "swaps the two with .transpose(1, 2)"
                )
            return _step_text(agreed, step, ATTENTION_STEPS)
        agreed = step
    # The attention weights: read the mask, the scale and the softmax from the learner's softmax.
    soft = [
        op
        for op in _where_ops(ops, "softmax")
        if op.outputs and op.outputs[0].dim() >= 2 and tuple(op.outputs[0].shape[-2:]) == (t, t)
    ]
    weights_ok = seen(book["attention weights"], ops) is not None
    if not weights_ok:
        text = _explain_weights(soft, book, t, hd, d_out, ops)
        if text:
            return text
        hyp = _attention_hypothesis(x, weights, num_heads, out)
        return hyp or _step_text("the scores", "attention weights", ATTENTION_STEPS)
    for step in ("context", "merged heads", "output"):
        if seen(book[step], ops) is None:
            if step == "merged heads":
                wrong = attention_chain(x, weights, num_heads, no_transpose=True)["merged heads"]
                if seen(wrong, ops) is not None:
                    return (
                        "the heads are merged without transpose(1, 2): .view(b, tokens, d_out) of "
                        "(b, heads, tokens, head_dim) mixes heads and tokens; the book transposes "
                        "the context back first"
                    )
            if (
                step == "output"
                and isinstance(out, torch.Tensor)
                and close(out, book["merged heads"])
            ):
                return "the output projection out_proj is never applied to the merged context"
            hyp = _attention_hypothesis(x, weights, num_heads, out)
            return hyp or _step_text(agreed, step, ATTENTION_STEPS)
        agreed = step
    return _attention_hypothesis(x, weights, num_heads, out)


def _explain_weights(soft, book, t, hd, d_out, ops) -> str | None:
    """The mask, the scale or the softmax's dimension, read from the learner's softmax call."""
    book_hidden = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    if not soft:
        return None
    op = soft[0]
    given = op.args[0] if op.args and isinstance(op.args[0], torch.Tensor) else None
    dim = _softmax_dim(op)
    if dim is not None and dim % op.outputs[0].dim() != op.outputs[0].dim() - 1:
        return (
            f"the softmax runs over dim={dim}; the book's over the last dimension (dim=-1), the "
            "keys, so each query's attention weights sum to 1"
        )
    if given is None or given.dim() < 2:
        return None
    g = given.reshape(-1, t, t) if given.numel() % (t * t) == 0 else None
    if g is None:
        return None
    hidden = torch.isneginf(g).all(dim=0)
    w = op.outputs[0].reshape(-1, t, t)
    words = _mask_words(hidden | (w == 0).all(dim=0), book_hidden)
    if words:
        zeros = bool((g[:, book_hidden] == 0).all()) and not bool(hidden.any())
        if zeros:
            return (
                "the masked scores are set to 0, not -inf, so the softmax still gives the later "
                "positions weight: masked_fill(mask, -torch.inf)"
            )
        return words
    raw = book["scores"].reshape(-1, t, t)
    c = _ratio(raw, g, ~book_hidden.expand_as(g))
    if c is not None and not math.isclose(c, hd**0.5, rel_tol=1e-3):
        after = ""
        if math.isclose(c, 1.0, rel_tol=1e-3):
            later = op.outputs[0] / hd**0.5
            if any(close(o, later) for o2 in ops for o in o2.outputs if o.shape == later.shape):
                return (
                    f"the scale is applied after the softmax: the book divides the scores by "
                    f"sqrt({hd}) = {hd**0.5:g} before the softmax"
                )
        return (
            f"the scores are divided by {_name_scale(c, hd, d_out)} before the softmax, the book "
            f"divides by sqrt(head_dim) = sqrt({hd}) = {hd**0.5:g}{after}"
        )
    return None


def _attention_hypothesis(x, weights, num_heads, out) -> str | None:
    if not isinstance(out, torch.Tensor):
        return None
    found = [
        what
        for what, change in ATTENTION_HYPOTHESES
        if close(out, attention_chain(x, weights, num_heads, **change)["output"])
    ]
    if len(found) == 1:
        return f"your output equals the book's attention with {found[0]}"
    return None


def _step_text(agreed: str, step: str, recipes: dict[str, str]) -> str:
    return (
        f"your values agree through {agreed}; the first step that differs is {step} "
        f"(the book: {recipes[step]})"
    )


# --- LayerNorm (§4.2) ----------------------------------------------------------------------------


def layernorm_chain(x, scale, shift, **change) -> dict[str, torch.Tensor]:
    """The book's §4.2 LayerNorm step by step; `change` applies one known mistake."""
    dim = change.get("dim", -1)
    eps = change.get("eps", 1e-5)
    steps = {"mean": x.mean(dim=dim, keepdim=True)}
    steps["variance"] = x.var(dim=dim, keepdim=True, unbiased=change.get("unbiased", False))
    centred = x - steps["mean"]
    var = steps["variance"]
    if change.get("eps_outside"):
        steps["normalised"] = centred / (torch.sqrt(var) + eps)
    elif change.get("no_sqrt"):
        steps["normalised"] = centred / (var + eps)
    else:
        steps["normalised"] = centred / torch.sqrt(var + eps)
    norm = steps["normalised"]
    if change.get("swap"):
        steps["output"] = shift * norm + scale
    else:
        s = 1.0 if change.get("no_scale") else scale
        steps["output"] = s * norm + (0.0 if change.get("no_shift") else shift)
    return steps


LAYERNORM_STEPS = {
    "mean": "x.mean(dim=-1, keepdim=True), over the embedding dimension",
    "variance": "x.var(dim=-1, keepdim=True, unbiased=False), the biased variance",
    "normalised": "(x - mean) / torch.sqrt(var + self.eps), eps=1e-5 inside the square root",
    "output": "self.scale * norm + self.shift",
}

LAYERNORM_HYPOTHESES: list[tuple[str, dict]] = [
    (
        "the unbiased variance (unbiased=True, dividing by n - 1; the book divides by n)",
        {"unbiased": True},
    ),
    (
        "eps added outside the square root (sqrt(var) + eps; the book: sqrt(var + eps))",
        {"eps_outside": True},
    ),
    ("no eps (sqrt(var) alone; the book adds eps=1e-5 under the square root)", {"eps": 0.0}),
    ("eps=1e-6 (the book's eps is 1e-5)", {"eps": 1e-6}),
    (
        "the variance not square-rooted (dividing by var + eps, not its square root)",
        {"no_sqrt": True},
    ),
    ("mean and variance over dim 0 (the batch), not dim=-1 (the embedding)", {"dim": 0}),
    ("the shift left out (scale * norm only)", {"no_shift": True}),
    ("the scale left out (norm + shift only)", {"no_scale": True}),
    ("scale and shift swapped (shift * norm + scale)", {"swap": True}),
]


def describe_layernorm(module: nn.Module, emb_dim: int) -> str | None:
    """Which §4.2 step the learner's LayerNorm computes otherwise, on probes that show each one.

    The learner's two parameters (in definition order: scale, shift) get distinct random
    values; rows of small variance make eps visible. None when every probe agrees.
    """
    work = copy.deepcopy(module).eval()
    params = [p for p in work.parameters() if p.dim() == 1 and p.numel() == emb_dim]
    if len(params) < 2:
        return None
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        params[0].copy_(1 + torch.rand(emb_dim, generator=gen))
        params[1].copy_(torch.rand(emb_dim, generator=gen))
    scale, shift = params[0].detach(), params[1].detach()
    probes = [torch.randn(3, emb_dim, generator=gen) * s for s in (1.0, 1e-2, 1e-3)]
    outs = []
    for x in probes:
        out, ops, error = trace(work, x)
        if error is not None or not isinstance(out, torch.Tensor):
            return None
        book = layernorm_chain(x, scale, shift)
        if close(out, book["output"]):
            outs.append((x, out, None))
            continue
        outs.append((x, out, ops))
    failing = [(x, out, ops) for x, out, ops in outs if ops is not None]
    if not failing:
        return None
    found = [
        what
        for what, change in LAYERNORM_HYPOTHESES
        if all(
            close(out, layernorm_chain(x, scale, shift, **change)["output"]) for x, out, _ in outs
        )
    ]
    if len(found) == 1:
        return f"your LayerNorm equals the book's with {found[0]}"
    x, out, ops = failing[0]
    book = layernorm_chain(x, scale, shift)
    agreed = "the input"
    for step in LAYERNORM_STEPS:
        if seen(book[step], ops) is None:
            if step == "variance":
                std = x.std(dim=-1, keepdim=True)
                if (
                    seen(std, ops) is not None
                    or seen(book["mean"], ops) is not None
                    and seen(x.var(dim=-1, keepdim=True), ops) is not None
                ):
                    return (
                        "the variance is the unbiased one (dividing by n - 1): the book's "
                        "x.var(dim=-1, keepdim=True, unbiased=False) divides by n"
                    )
            return _step_text(agreed, step, LAYERNORM_STEPS)
        agreed = f"the {step}"
    return _step_text(agreed, "output", LAYERNORM_STEPS)


# --- generate (§5.3) ---------------------------------------------------------------------------


class Probe(nn.Module):
    """A stand-in model whose logits depend on each token and its position; records its inputs."""

    def __init__(self, vocab: int = 12, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.table = torch.randn(vocab, vocab, generator=gen) * 2
        self.position = torch.randn(64, vocab, generator=gen)
        self.seen: list[torch.Tensor] = []

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        self.seen.append(idx.detach().clone())
        t = idx.shape[1]
        return self.table[idx % self.table.shape[0]] + self.position[:t]


def generate_book(
    model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, eos_id=None, **change
):
    """The book's §5.3 `generate`, step by step; `change` applies one known mistake."""
    for _ in range(max_new_tokens):
        idx_cond = idx[:, :context_size] if change.get("crop_first") else idx[:, -context_size:]
        if change.get("no_crop"):
            idx_cond = idx
        with torch.no_grad():
            logits = model(idx_cond)
        logits = logits[:, 0, :] if change.get("first_position") else logits[:, -1, :]
        if top_k is not None:
            k = top_k + change.get("k_off", 0)
            top_logits, _ = torch.topk(logits, k)
            min_val = top_logits[:, -1:] if not change.get("min_first") else top_logits[:, :1]
            fill = torch.tensor(change.get("fill", float("-inf")))
            logits = torch.where(logits < min_val, fill, logits)
        if temperature > 0.0 and not change.get("argmax_always"):
            if change.get("temperature_multiplies"):
                scaled = logits * temperature
            elif change.get("temperature_after_softmax"):
                scaled = None
            else:
                scaled = logits / temperature
            if scaled is None:
                probs = torch.softmax(logits, dim=-1) / temperature
            else:
                probs = torch.softmax(scaled, dim=change.get("softmax_dim", -1))
            idx_next = torch.multinomial(probs, num_samples=1)
        else:
            idx_next = torch.argmax(logits, dim=change.get("argmax_dim", -1), keepdim=True)
        if eos_id is not None and int(idx_next[0, 0]) == eos_id and not change.get("append_eos"):
            break
        idx = torch.cat((idx, idx_next), dim=1)
        if eos_id is not None and int(idx_next[0, 0]) == eos_id:
            break
    return idx


GENERATE_HYPOTHESES: list[tuple[str, dict]] = [
    (
        "the crop keeping the first context_size tokens (idx[:, :context_size]); the book keeps the last",
        {"crop_first": True},
    ),
    ("no crop to the context size", {"no_crop": True}),
    (
        "the first position's logits (logits[:, 0, :]); the book takes the last position's, logits[:, -1, :]",
        {"first_position": True},
    ),
    ("top-k keeping k + 1 tokens", {"k_off": 1}),
    ("top-k keeping k - 1 tokens", {"k_off": -1}),
    (
        "top-k's threshold taken from the largest logit (top_logits[:, 0]) instead of the k-th (top_logits[:, -1])",
        {"min_first": True},
    ),
    ("top-k setting the other logits to 0 instead of -inf", {"fill": 0.0}),
    (
        "the logits multiplied by the temperature; the book divides them (logits / temperature)",
        {"temperature_multiplies": True},
    ),
    (
        "the temperature applied after the softmax; the book divides the logits before it",
        {"temperature_after_softmax": True},
    ),
    (
        "the sampling softmax over dim=0 (the batch); the book's over the vocabulary (dim=-1)",
        {"softmax_dim": 0},
    ),
    (
        "argmax even when temperature > 0; the book samples with torch.multinomial",
        {"argmax_always": True},
    ),
    (
        "the end-of-text token appended before stopping; the book stops without appending it",
        {"append_eos": True},
    ),
]

GENERATE_SIMPLE_DIM = (
    "argmax over dim=0 (the batch); the book's argmax is over the vocabulary (dim=-1)",
    {"argmax_dim": 0},
)

GENERATE_CASES: list[dict] = [
    {"temperature": 0.0, "top_k": None},
    {"temperature": 5.0, "top_k": 2},
    {"temperature": 5.0, "top_k": 5},
    {"temperature": 1.3, "top_k": None},
    {"temperature": 0.8, "top_k": 4},
    {"temperature": 0.0, "top_k": 3},
    {"temperature": 1.0, "top_k": 3},
]


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


PROMPT = torch.tensor([[1, 5, 7, 2, 9], [3, 3, 8, 0, 4]])


def _run_generate(fn, change=None, **case):
    """Output ids and the probe's inputs of `fn` (a learner's generate) or the book's variant."""
    model = Probe()
    idx = PROMPT[:1].clone() if case.get("eos") is not None else PROMPT.clone()
    options = {"temperature": case["temperature"], "top_k": case["top_k"]}
    if case.get("eos") is not None:
        options["eos_id"] = case["eos"]
    with _seeded(7):
        try:
            if change is not None:
                out = generate_book(model, idx, 4, 3, **options, **change)
            elif case.get("simple"):
                out = fn(model, idx=idx, max_new_tokens=4, context_size=3)
            else:
                out = fn(model, idx=idx, max_new_tokens=4, context_size=3, **options)
        except Exception as err:  # noqa: BLE001 - a crash is an answer too
            return f"{type(err).__name__}", model.seen
    return out, model.seen


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a, b))
    return a == b


def describe_generate_simple(generate_text_simple: Callable) -> str | None:
    """Which §4.7 step of the learner's greedy `generate_text_simple` differs (crop, position)."""
    return describe_generate(generate_text_simple, simple=True)


def describe_generate(generate: Callable, *, simple: bool = False) -> str | None:
    """Which §5.3 step of the learner's `generate` differs: crop, position, top-k, temperature,
    softmax or sampling, from a probe model's inputs and known variants of the book's code."""
    if simple:
        cases = [{"temperature": 0.0, "top_k": None, "simple": True}]
    else:
        cases = [*GENERATE_CASES]
        book_eos, _ = _run_generate(None, {}, temperature=0.0, top_k=None)
        cases.append({"temperature": 0.0, "top_k": None, "eos": int(book_eos[0, 6])})
    mine = [_run_generate(generate, None, **c) for c in cases]
    books = [_run_generate(None, {}, **c) for c in cases]
    hypotheses = GENERATE_HYPOTHESES[:3] + [GENERATE_SIMPLE_DIM] if simple else GENERATE_HYPOTHESES
    if all(_same(m[0], b[0]) for m, b in zip(mine, books)):
        return None
    # The crop: each model input against the last context_size tokens of the learner's own
    # sequence at that step (read from the learner's output).
    for m_out, m_seen in mine:
        if not isinstance(m_out, torch.Tensor) or m_out.dim() != 2:
            continue
        start = PROMPT.shape[1]
        for n, got in enumerate(m_seen):
            seq = m_out[: got.shape[0], : start + n]
            want = seq[:, -3:]
            if got.shape == want.shape and torch.equal(got, want):
                continue
            if got.shape[1] > want.shape[1]:
                return (
                    f"the model is given {got.shape[1]} tokens, more than context_size = "
                    f"{want.shape[1]}: the book crops to idx[:, -context_size:] on every step"
                )
            if got.shape == want.shape and torch.equal(got, seq[:, : want.shape[1]]):
                return (
                    f"your crop keeps the first {got.shape[1]} tokens, the book keeps the last "
                    f"{want.shape[1]} (idx[:, -context_size:])"
                )
            break
        break
    found = [
        what
        for what, change in hypotheses
        if all(_same(m[0], _run_generate(None, change, **c)[0]) for m, c in zip(mine, cases))
    ]
    if len(found) == 1:
        return f"your generate's output equals the book's with {found[0]}"
    failing = next(c for (m, _), (b, _), c in zip(mine, books, cases) if not _same(m, b))
    if simple:
        return None
    return _generate_step(generate, failing) or (
        f"the generated ids differ with temperature={failing['temperature']}, top_k="
        f"{failing['top_k']}: compare crop, last-position logits, top-k, temperature, softmax, "
        "sampling with §5.3"
    )


def _generate_step(generate, case) -> str | None:
    """Trace one step of the learner's generate and look up the book's intermediates in order."""
    model = Probe()
    idx = PROMPT.clone()
    with _seeded(7):
        _, ops, _ = trace(
            generate,
            model,
            idx=idx,
            max_new_tokens=1,
            context_size=3,
            temperature=case["temperature"],
            top_k=case["top_k"],
        )
    logits = model(idx[:, -3:])[:, -1, :]
    steps = {"the last position's logits": logits}
    recipes = {
        "the last position's logits": "logits[:, -1, :]",
        "top-k": f"logits below the {case['top_k']}-th largest set to -inf",
        "temperature": "logits / temperature",
        "softmax": "torch.softmax(logits, dim=-1)",
    }
    if case["top_k"] is not None:
        top, _ = torch.topk(logits, case["top_k"])
        logits = torch.where(logits < top[:, -1:], torch.tensor(float("-inf")), logits)
        steps["top-k"] = logits
    if case["temperature"] > 0:
        steps["temperature"] = logits / case["temperature"]
        steps["softmax"] = torch.softmax(steps["temperature"], dim=-1)
    agreed = "the crop"
    for step, value in steps.items():
        if seen(value, ops) is None:
            return _step_text(agreed, step, recipes)
        agreed = step
    return None


# --- GELU (§4.3) and the losses' reductions (§5.1, §6.6) ----------------------------------------


def _which(found: list[str], prefix: str) -> str | None:
    return f"{prefix} {found[0]}" if len(found) == 1 else None


def describe_gelu(gelu: nn.Module) -> str | None:
    """Which known departure from §4.3's tanh approximation the learner's GELU equals."""
    x = torch.linspace(-6, 6, 241)
    with torch.no_grad():
        out = gelu(x)
    c = math.sqrt(2 / math.pi)
    book = 0.5 * x * (1 + torch.tanh(c * (x + 0.044715 * x**3)))
    if not isinstance(out, torch.Tensor) or close(out, book):
        return None
    hypotheses = {
        "2/π without its square root (the book: sqrt(2/π))": 0.5
        * x
        * (1 + torch.tanh(2 / math.pi * (x + 0.044715 * x**3))),
        "x² where the book has x³ (0.044715·x³)": 0.5
        * x
        * (1 + torch.tanh(c * (x + 0.044715 * x**2))),
        "the exact erf GELU; the book (GPT-2) uses the tanh approximation": 0.5
        * x
        * (1 + torch.erf(x / math.sqrt(2))),
        "ReLU; the book's activation is GELU": torch.relu(x),
        "no 0.5 factor (0.5·x·(1 + tanh(...)))": x * (1 + torch.tanh(c * (x + 0.044715 * x**3))),
    }
    return _which([k for k, v in hypotheses.items() if close(out, v)], "your GELU is")


class _Table(nn.Module):
    """Fixed logits per token id (any number of classes), for loss and accuracy probes."""

    def __init__(self, classes: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.table = torch.randn(16, classes, generator=gen) * 2

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table[idx % 16]


def describe_loss_batch(calc_loss_batch: Callable) -> str | None:
    """How the learner's §5.1 `calc_loss_batch` reduces the token losses, if not as the book."""
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randint(0, 16, (2, 5), generator=gen)
    targets = torch.randint(0, 10, (2, 5), generator=gen)
    targets[1, 3:] = -100
    model = _Table(10)
    with torch.no_grad():
        got = calc_loss_batch(inputs, targets, model, "cpu")
        logits = model(inputs).flatten(0, 1)
        flat = targets.flatten()
        book = torch.nn.functional.cross_entropy(logits, flat)
        if close(torch.as_tensor(got, dtype=book.dtype).reshape(()), book):
            return None
        ce = torch.nn.functional.cross_entropy
        hypotheses = {
            "the sum over tokens (reduction='sum'); the book takes the mean": ce(
                logits, flat, reduction="sum"
            ),
            "a softmax before cross_entropy, which applies log-softmax itself": ce(
                torch.softmax(logits, dim=-1), flat
            ),
            "the -100 targets counted (the mean over every position); the book's mean skips "
            "them": ce(logits, flat, reduction="sum") / flat.numel(),
        }
    value = torch.as_tensor(got, dtype=book.dtype).reshape(())
    return _which([k for k, v in hypotheses.items() if close(value, v)], "your loss is")


def _loader(sizes: Sequence[int], classes: int, per_token: bool):
    gen = torch.Generator().manual_seed(2)
    batches = []
    for n in sizes:
        x = torch.randint(0, 16, (n, 4), generator=gen)
        y = torch.randint(0, classes, (n, 4) if per_token else (n,), generator=gen)
        batches.append((x, y))
    return batches


def describe_loss_loader(
    calc_loss_loader: Callable, calc_loss_batch: Callable, *, classes: int, per_token: bool
) -> str | None:
    """How the learner's `calc_loss_loader` averages the batch losses, if not as the book.

    Batches of 4, 4 and 2 (the last smaller); asked for all batches and for num_batches=2.
    """
    data = _loader((4, 4, 2), classes, per_token)
    model = _Table(classes)
    with torch.no_grad():
        losses = [float(calc_loss_batch(x, y, model, "cpu")) for x, y in data]
        got = [
            float(calc_loss_loader(data, model, "cpu")),
            float(calc_loss_loader(data, model, "cpu", num_batches=2)),
        ]
    sizes = [len(x) for x, _ in data]
    book = [sum(losses) / 3, sum(losses[:2]) / 2]
    if all(math.isclose(a, b, rel_tol=1e-5) for a, b in zip(got, book)):
        return None
    hypotheses = {
        "weights each batch by its number of examples (a mean over examples); the book "
        "averages the batch losses, total_loss / num_batches": [
            sum(loss * n for loss, n in zip(losses, sizes)) / sum(sizes),
            sum(loss * n for loss, n in zip(losses[:2], sizes[:2])) / sum(sizes[:2]),
        ],
        "divides by len(data_loader) even when num_batches is smaller; the book divides by "
        "num_batches": [sum(losses) / 3, sum(losses[:2]) / 3],
        "ignores num_batches (averages every batch)": [sum(losses) / 3, sum(losses) / 3],
        "adds every batch's loss, ignoring num_batches in the loop, then divides by "
        "num_batches; the book stops after num_batches batches": [sum(losses) / 3, sum(losses) / 2],
        "sums the batch losses without dividing by num_batches": [sum(losses), sum(losses[:2])],
    }
    found = [
        k
        for k, v in hypotheses.items()
        if all(math.isclose(a, b, rel_tol=1e-5) for a, b in zip(got, v))
    ]
    return _which(found, "your loader loss")


def describe_accuracy(calc_accuracy_loader: Callable) -> str | None:
    """How the learner's §6.6 `calc_accuracy_loader` counts, if not as the book."""
    data = _loader((4, 4, 2), 2, per_token=False)
    model = _Table(2)
    with torch.no_grad():
        got = [
            float(calc_accuracy_loader(data, model, "cpu")),
            float(calc_accuracy_loader(data, model, "cpu", num_batches=2)),
        ]

        def hits(position: int, batches) -> list[tuple[int, int]]:
            return [
                (int((model(x)[:, position, :].argmax(-1) == y).sum()), len(y)) for x, y in batches
            ]

    def pooled(h):
        return sum(c for c, _ in h) / sum(n for _, n in h)

    def per_batch(h):
        return sum(c / n for c, n in h) / len(h)

    last, first = hits(-1, data), hits(0, data)
    book = [pooled(last), pooled(last[:2])]
    if all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(got, book)):
        return None
    hypotheses = {
        "the mean of the per-batch accuracies; the book counts correct_predictions / "
        "num_examples over all batches, so a smaller last batch counts for fewer examples": [
            per_batch(last),
            per_batch(last[:2]),
        ],
        "the first token's logits (logits[:, 0, :]); the book reads the last token's, "
        "logits[:, -1, :]": [pooled(first), pooled(first[:2])],
        "divided by the number of batches, not of examples": [
            sum(c for c, _ in last) / 3,
            sum(c for c, _ in last[:2]) / 2,
        ],
    }
    found = [
        k
        for k, v in hypotheses.items()
        if all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(got, v))
    ]
    return _which(found, "your accuracy is")


# --- the instruction collate (§7.3) and the response extraction (§7.7) ---------------------------

PAD, IGNORE = 50256, -100


def describe_collate(collate: Callable) -> str | None:
    """Which step of §7.3's collate (pad → shift → mask → truncate) the learner's differs in."""
    items = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]]
    longest = max(len(i) for i in items)
    inputs, targets = (t.cpu() for t in collate(items))
    padded = torch.tensor([i + [PAD] * (longest + 1 - len(i)) for i in items])
    book_in, book_t = padded[:, :-1], padded[:, 1:].clone()
    pad = book_t == PAD
    later = pad & (pad.cumsum(dim=1) > 1)
    book_t[later] = IGNORE
    if inputs.shape[1] == longest - 1:
        return (
            f"your inputs have {longest - 1} columns, the book's {longest}: the book pads every "
            "item to the longest + 1, so even the longest item ends with an end-of-text target"
        )
    if bool((inputs == IGNORE).any()):
        return (
            "your inputs contain -100: the targets share memory with the padded batch (no "
            ".clone()), so masking the targets changed the inputs too"
        )
    if (
        inputs.shape == book_in.shape
        and bool((inputs[book_in == PAD] == 0).all())
        and not bool((inputs == PAD).any())
    ):
        return "your padding is 0; the book pads with the end-of-text id 50256 (pad_token_id)"
    if targets.shape == inputs.shape and torch.equal(targets, inputs):
        return "your targets equal the inputs: the book shifts them one token, padded[:, 1:]"
    if targets.shape == book_t.shape:
        first = pad & ~later
        if bool((targets[first] == IGNORE).all()):
            return (
                "the first end-of-text target of each row is masked too: the book keeps it "
                "(the model learns to stop) and sets only the later padding targets to -100"
            )
        if bool((targets[later] == 0).all()):
            return "the ignored targets are 0, not -100 (ignore_index, what cross_entropy skips)"
        if bool((targets[later] == PAD).all()):
            return "the padding targets after the first are kept: the book replaces them with -100"
    short_in, _ = collate(items, allowed_max_length=3)
    if short_in.shape[1] > 3:
        return (
            f"with allowed_max_length=3 your inputs keep {short_in.shape[1]} columns: the book "
            "truncates inputs and targets to allowed_max_length"
        )
    try:
        _, masked = collate([(3, items[0]), (2, items[1]), (2, items[2])])
    except Exception:  # noqa: BLE001 - no prompt masking (exercise 7.2): nothing to compare
        return None
    count = int((masked[0] == IGNORE).cumprod(dim=0).sum())
    if count != 2:
        return (
            f"the prompt mask covers {count} targets of an item with prompt_length 3; the book "
            "masks prompt_length - 1 = 2 (target j predicts token j + 1)"
        )
    return None


def describe_extract(extract_response: Callable) -> str | None:
    """What the learner's §7.7 `extract_response` leaves in: the prompt, the header, spaces."""
    prompt = (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName a colour."
    )
    out = extract_response(prompt + "\n\n### Response:\n  Blue.  \n", prompt)
    if out == "Blue.":
        return None
    if "### Instruction" in out or out.startswith("Below is"):
        return (
            "your response still holds the prompt: the book cuts generated_text[len(input_text):]"
        )
    if "### Response:" in out:
        return "your response still holds the '### Response:' header: the book removes it"
    if out.strip() == "Blue.":
        return "your response keeps the spaces and newlines around it: the book calls .strip()"
    return None


# --- a failing test, explained ---------------------------------------------------------------


@contextmanager
def explained(describe: Callable[[], str | None]) -> Iterator[None]:
    """On a failed assertion, put `describe()`'s step diagnosis first in the message.

    The diagnosis never hides the test's own failure: if it fails or finds nothing, the
    original error is raised unchanged.
    """
    try:
        yield
    except AssertionError as err:
        try:
            with torch.random.fork_rng(devices=[]):
                text = describe()
        except Exception:  # noqa: BLE001 - the test's own failure stays the answer
            text = None
        if not text:
            raise
        raise AssertionError(f"{text}\n{err}") from None


# --- the feed-forward (§4.3), evaluate_model (§5.2), split_data (§7.2) -------------------------


def describe_feedforward(module: nn.Module, emb_dim: int) -> str | None:
    """What the learner's §4.3 `FeedForward` puts between its two Linear layers, if not GELU."""
    pairs = linear_weights(module)
    if len(pairs) != 2:
        return None
    x = torch.linspace(-3, 3, 4 * emb_dim).reshape(2, 2, emb_dim)
    with torch.no_grad():
        out = module(x)
        hidden = _lin(x, pairs[0])
        c = math.sqrt(2 / math.pi)
        tanh_gelu = 0.5 * hidden * (1 + torch.tanh(c * (hidden + 0.044715 * hidden**3)))
        if close(out, _lin(tanh_gelu, pairs[1])):
            return None
        hypotheses = {
            "has no activation between its two Linear layers; the book puts GELU between "
            "them": hidden,
            "uses ReLU between its two Linear layers; the book uses GELU": torch.relu(hidden),
            "uses the exact (erf) GELU; the book uses the tanh approximation": (
                torch.nn.functional.gelu(hidden)
            ),
        }
        found = [k for k, v in hypotheses.items() if close(out, _lin(v, pairs[1]))]
    return _which(found, "your FeedForward")


class _ModeProbe(nn.Module):
    """A `_Table` that records its mode (train or eval) and each batch it is given."""

    def __init__(self, classes: int):
        super().__init__()
        self.table = _Table(classes)
        self.seen: list[tuple[bool, torch.Tensor]] = []

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, idx))
        return self.table(idx)


def describe_evaluate(evaluate_model: Callable, *, classes: int, per_token: bool) -> str | None:
    """How the learner's `evaluate_model` departs from §5.2/§6.7: mode, loaders, mode after."""
    train = _loader((4, 4), classes, per_token)
    val = [(x.flip(0), y.flip(0)) for x, y in _loader((4, 4), classes, per_token)[::-1]]
    model = _ModeProbe(classes).train()
    with torch.no_grad():
        evaluate_model(model, train, val, "cpu", 1)
    if any(training for training, _ in model.seen):
        return (
            "your evaluate_model scores the loaders with the model in training mode (dropout "
            "on); the book calls model.eval() before scoring"
        )
    if not any(torch.equal(idx, val[0][0]) for _, idx in model.seen):
        return (
            "your evaluate_model never reads val_loader: its second loss comes from another "
            "loader (the training loader twice?); the book scores val_loader for it"
        )
    if not model.training:
        return (
            "your evaluate_model leaves the model in eval mode (dropout stays off for the rest "
            "of training); the book calls model.train() before returning"
        )
    return None


def describe_split(split_data: Callable) -> str | None:
    """How the sizes of the learner's §7.2 split differ from (train, test, validation)'s.

    A split returning the book's parts in another order is named by
    `ftkit.check.returns` (every book function returning a tuple), not here.
    """
    data = list(range(100))
    parts = [list(p) for p in split_data(data)]
    book = [data[:85], data[85:95], data[95:]]
    if parts == book:
        return None
    sizes, want = [len(p) for p in parts], [len(p) for p in book]
    if sorted(sizes) == sorted(want) and sizes != want:
        return (
            f"your split's parts have {sizes} items, the book's {want}: (train, test, validation)"
        )
    return None
