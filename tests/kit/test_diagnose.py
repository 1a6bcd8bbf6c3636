"""ftkit.diagnose names the submodule a one-mistake model first departs from the book at.

Each variant below is the reference model with a single plausible learner mistake
(a subclass, or a reference class swapped onto the built modules, so the initial
weights stay the book's). The diagnosis must name the right part and never blame
the initialisation order; only a model that creates its layers in another order may
be told so.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import reference.model as R
from ftkit import steps
from ftkit.asserts import assert_tensor_equal
from ftkit.check.impl import Impl
from ftkit.diagnose import Diagnosis, diagnose, diagnose_model, pretty
from ftkit.presets import get_config
from ftkit.teach import teach_error

ROOT = Path(__file__).resolve().parents[2]
CFG = get_config("tiny", context_length=16, drop_rate=0.1)
BATCH = torch.tensor([[6109, 3626, 6100, 345], [6109, 1110, 6622, 257]])


# --- one-mistake variants ---------------------------------------------------------------


class NoFinalNorm(R.GPTModel):
    def forward(self, in_idx):
        _, seq_len = in_idx.shape
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(torch.arange(seq_len)))
        return self.out_head(self.trf_blocks(x))  # final_norm forgotten


class NoPosEmb(R.GPTModel):
    def forward(self, in_idx):
        x = self.drop_emb(self.tok_emb(in_idx))  # positions never added
        return self.out_head(self.final_norm(self.trf_blocks(x)))


class PosEmbUnused(R.GPTModel):
    def forward(self, in_idx):
        _, seq_len = in_idx.shape
        tok_embeds = self.tok_emb(in_idx)
        pos_embeds = self.pos_emb(torch.arange(seq_len))  # noqa: F841 (computed, not added)
        x = self.drop_emb(tok_embeds)
        return self.out_head(self.final_norm(self.trf_blocks(x)))


class NoFeedForwardShortcut(R.TransformerBlock):
    def forward(self, x):
        x = x + self.drop_shortcut(self.att(self.norm1(x)))
        return self.drop_shortcut(self.ff(self.norm2(x)))  # no `x +`


class MaskDiagonalOffByOne(R.MultiHeadAttention):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__(d_in, d_out, context_length, dropout, num_heads, qkv_bias)
        self.mask = torch.triu(torch.ones(context_length, context_length), diagonal=0)


def _attention(mha, x, *, scale, transpose=True, dropout_on_context=False):
    """The book's attention with one step changed, for the variants below."""
    b, n, _ = x.shape

    def heads(t):
        if transpose:
            return t.view(b, n, mha.num_heads, mha.head_dim).transpose(1, 2)
        return t.view(b, mha.num_heads, n, mha.head_dim)

    q, k, v = heads(mha.W_query(x)), heads(mha.W_key(x)), heads(mha.W_value(x))
    scores = (q @ k.transpose(2, 3)).masked_fill(mha.mask.bool()[:n, :n], -torch.inf)
    weights = torch.softmax(scores / scale, dim=-1)
    if not dropout_on_context:
        weights = mha.dropout(weights)
    context = weights @ v
    context = context.transpose(1, 2) if transpose else context
    context = context.contiguous().view(b, n, mha.d_out)
    if dropout_on_context:
        context = mha.dropout(context)
    return mha.out_proj(context)


class DropoutOnContext(R.MultiHeadAttention):
    def forward(self, x):
        return _attention(self, x, scale=self.head_dim**0.5, dropout_on_context=True)


class HeadsNotTransposed(R.MultiHeadAttention):
    def forward(self, x):
        return _attention(self, x, scale=self.head_dim**0.5, transpose=False)


class ScaleBySqrtDOut(R.MultiHeadAttention):
    def forward(self, x):
        return _attention(self, x, scale=self.d_out**0.5)


class FeedForward2x(R.FeedForward):
    def __init__(self, cfg):
        nn.Module.__init__(self)
        self.layers = nn.Sequential(
            nn.Linear(cfg["emb_dim"], 2 * cfg["emb_dim"]),
            R.GELU(),
            nn.Linear(2 * cfg["emb_dim"], cfg["emb_dim"]),
        )


class GELUWithoutSqrt2OverPi(R.GELU):
    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(x + 0.044715 * torch.pow(x, 3)))


class LayerNormUnbiased(R.LayerNorm):
    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True)  # unbiased: divides by n - 1
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class LayerNormWithoutEps(R.LayerNorm):
    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var) + self.shift


class FinalNormFirst(R.GPTModel):
    """The book's computation, but final_norm created before the blocks: other initial weights."""

    def __init__(self, cfg):
        nn.Module.__init__(self)
        self.cfg = dict(cfg)
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.final_norm = R.LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)
        self.trf_blocks = nn.Sequential(*[R.TransformerBlock(cfg) for _ in range(cfg["n_layers"])])


def with_parts(**swaps: type) -> type[R.GPTModel]:
    """A GPTModel whose parts of the reference class `name` behave as `swaps[name]`.

    The model is built as the book's (same modules, same RNG draws), then each part's
    class is switched, so only the computation differs. A part that changes its own
    layout (FeedForward2x) is built instead.
    """

    class Variant(R.GPTModel):
        def __init__(self, cfg):
            super().__init__(cfg)
            for name, module in list(self.named_modules()):
                new = swaps.get(type(module).__name__)
                if new is None or type(module) is new:
                    continue
                if new is FeedForward2x:
                    parent_name, _, child = name.rpartition(".")
                    setattr(self.get_submodule(parent_name), child, FeedForward2x(cfg))
                elif new is MaskDiagonalOffByOne:
                    module.__class__ = new
                    n = cfg["context_length"]
                    module.mask = torch.triu(torch.ones(n, n), diagonal=0)
                else:
                    module.__class__ = new

    return Variant


# (variant, words the summary line must contain)
VARIANTS = {
    "final_norm skipped": (NoFinalNorm, ["first difference at final_norm", "never calls"]),
    "pos_emb never called": (NoPosEmb, ["first difference at pos_emb"]),
    "pos_emb computed, not added": (PosEmbUnused, ["first difference at GPTModel", "drop_emb"]),
    "no shortcut around ff": (
        with_parts(TransformerBlock=NoFeedForwardShortcut),
        ["first difference at trf_blocks[0]", "no shortcut around the feed-forward"],
    ),
    "mask diagonal off by one": (
        with_parts(MultiHeadAttention=MaskDiagonalOffByOne),
        ["first difference at trf_blocks[0].att", "hides position 0 from itself", "diagonal=0"],
    ),
    "dropout on context vectors": (
        with_parts(MultiHeadAttention=DropoutOnContext),
        [
            "first difference at trf_blocks[0].att",
            "dropout is applied to the context",
            "attention weights",
        ],
    ),
    "heads not transposed": (
        with_parts(MultiHeadAttention=HeadsNotTransposed),
        [
            "first difference at trf_blocks[0].att",
            "split with .view(b, heads, tokens, head_dim)",
            "transpose(1, 2)",
        ],
    ),
    "scaled by sqrt(d_out)": (
        with_parts(MultiHeadAttention=ScaleBySqrtDOut),
        [
            "first difference at trf_blocks[0].att",
            "divided by sqrt(64) = 8",
            "sqrt(head_dim) = sqrt(16) = 4",
        ],
    ),
    "feed-forward 2x": (
        with_parts(FeedForward=FeedForward2x),
        ["first difference at trf_blocks[0].ff", "4·emb", "mis-shaped"],
    ),
    "GELU without sqrt(2/pi)": (
        with_parts(GELU=GELUWithoutSqrt2OverPi),
        ["first difference at trf_blocks[0].ff.layers[1]", "GELU", "sqrt(2/π)"],
    ),
    "LayerNorm unbiased variance": (
        with_parts(LayerNorm=LayerNormUnbiased),
        ["first difference at trf_blocks[0].norm1", "LayerNorm", "unbiased variance"],
    ),
}


def assert_names(found: Diagnosis, words: list[str]) -> None:
    for word in words:
        assert word in found.text, f"{word!r} not in the diagnosis:\n{found.text}"
    assert not found.init_order, found.text
    assert "order" not in found.text and "manual_seed" not in found.text, found.text


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_one_mistake_model_is_named_at_its_part(variant):
    cls, words = VARIANTS[variant]
    found = diagnose_model(lambda: cls(CFG), lambda: R.GPTModel(CFG), [BATCH])
    assert_names(found, words)


def test_layernorm_without_eps_is_named_on_a_constant_input():
    # Only a row with variance 0 shows the missing eps; the model's own rows never are.
    cls = with_parts(LayerNorm=LayerNormWithoutEps)
    block_cfg = {**CFG, "n_layers": 1}
    x = torch.ones(1, 3, CFG["emb_dim"])
    found = diagnose_model(
        lambda: cls(block_cfg).trf_blocks[0], lambda: R.TransformerBlock(block_cfg), [x]
    )
    assert_names(found, ["first difference at norm1", "no eps", "under the square root"])


def test_parts_are_diagnosed_on_their_own():
    kwargs = {"d_in": 12, "d_out": 12, "context_length": 8, "dropout": 0.1, "num_heads": 3}
    x = torch.rand(2, 7, 12)
    found = diagnose_model(
        lambda: MaskDiagonalOffByOne(**kwargs), lambda: R.MultiHeadAttention(**kwargs), [x]
    )
    assert_names(found, ["first difference at MultiHeadAttention", "hides position 0 from itself"])
    found = diagnose_model(
        lambda: NoFeedForwardShortcut(CFG), lambda: R.TransformerBlock(CFG), [torch.rand(1, 4, 64)]
    )
    assert_names(found, ["first difference at TransformerBlock", "no shortcut around the feed"])


class BlocksInALoop(R.GPTModel):
    """The book's computation, but the blocks called one by one and GELU as a function."""

    def forward(self, in_idx):
        _, seq_len = in_idx.shape
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(torch.arange(seq_len)))
        for block in self.trf_blocks:
            x = block(x)
        return self.out_head(self.final_norm(x))


class BlocksInALoopNoFinalNorm(R.GPTModel):
    def forward(self, in_idx):
        _, seq_len = in_idx.shape
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(torch.arange(seq_len)))
        for block in self.trf_blocks:
            x = block(x)
        return self.out_head(x)


class FunctionalGELU(R.FeedForward):
    def forward(self, x):
        hidden = nn.functional.gelu(self.layers[0](x), approximate="tanh")
        return self.layers[2](hidden)


def test_the_books_computation_written_otherwise_has_no_difference():
    for cls in (BlocksInALoop, with_parts(FeedForward=FunctionalGELU)):
        found = diagnose_model(lambda cls=cls: cls(CFG), lambda: R.GPTModel(CFG), [BATCH])
        assert found.kind == "none", found.text
    found = diagnose_model(lambda: BlocksInALoopNoFinalNorm(CFG), lambda: R.GPTModel(CFG), [BATCH])
    assert_names(found, ["first difference at final_norm", "GPTModel.forward never calls"])


def test_a_child_called_twice_is_named():
    class BlocksTwice(R.GPTModel):
        def forward(self, in_idx):
            _, seq_len = in_idx.shape
            x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(torch.arange(seq_len)))
            return self.out_head(self.final_norm(self.trf_blocks(self.trf_blocks(x))))

    found = diagnose_model(lambda: BlocksTwice(CFG), lambda: R.GPTModel(CFG), [BATCH])
    assert_names(found, ["first difference at GPTModel", "final_norm", "calls trf_blocks 2 times"])


def test_only_another_creation_order_is_called_an_initialisation_order_difference():
    found = diagnose_model(lambda: FinalNormFirst(CFG), lambda: R.GPTModel(CFG), [BATCH])
    assert found.init_order, found.text
    assert "first difference" not in found.text
    assert "trf_blocks[0].att.W_query.weight" in found.text, found.text
    assert "another order" in found.text


def test_the_reference_itself_has_no_difference():
    found = diagnose_model(lambda: R.GPTModel(CFG), lambda: R.GPTModel(CFG), [BATCH])
    assert found.kind == "none", found.text


def test_missing_and_unexpected_keys_are_listed():
    class Renamed(R.GPTModel):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.ln_f = self.final_norm
            del self.final_norm

    found = diagnose_model(lambda: Renamed(CFG), lambda: R.GPTModel(CFG), [BATCH])
    assert found.kind == "layout"
    assert "missing: final_norm.scale, final_norm.shift" in found.text, found.text
    assert "unexpected: ln_f.scale, ln_f.shift" in found.text, found.text


def test_a_crashing_forward_is_diagnosed_up_to_the_crash():
    class Crashes(R.TransformerBlock):
        def forward(self, x):
            return self.ff(self.att(self.norm1(x)).transpose(0, 1).reshape(-1))

    found = diagnose_model(
        lambda: Crashes(CFG), lambda: R.TransformerBlock(CFG), [torch.rand(2, 3, 64)]
    )
    assert "first difference at" in found.text and not found.init_order, found.text


def test_diagnosis_leaves_the_models_and_the_rng_alone():
    actual, expected = NoFinalNorm(CFG).train(), R.GPTModel(CFG).eval()
    before = {k: v.clone() for k, v in actual.state_dict().items()}
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    diagnose(actual, expected, [BATCH])
    assert torch.equal(torch.random.get_rng_state(), state)
    assert actual.training and not expected.training
    for key, value in actual.state_dict().items():
        assert_tensor_equal(value, before[key], name=key)


def test_pretty_names_indexes_as_python_does():
    assert pretty("trf_blocks.0.att.W_query") == "trf_blocks[0].att.W_query"
    assert pretty("trf_blocks.11") == "trf_blocks[11]"
    assert pretty("", "GPTModel") == "GPTModel"


# --- the NaN blind spot of the tensor comparison ------------------------------------------


def test_nan_equal_to_nan_fails_unless_asked():
    nan = torch.tensor([1.0, math.nan])
    with pytest.raises(AssertionError, match=r"NaN at outputs\[1\]: expected nan"):
        assert_tensor_equal(nan, nan.clone(), name="outputs")
    with pytest.raises(AssertionError, match=r"NaN at outputs\[1\]: expected 2.0"):
        assert_tensor_equal(nan, torch.tensor([1.0, 2.0]), name="outputs", atol=1e-3)
    assert_tensor_equal(nan, nan.clone(), name="outputs", equal_nan=True)


def book_tests(name: str):
    """A module of tests/book loaded by path (tests/ is no package), to call a test directly."""
    path = ROOT / "tests" / "book" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_book_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_causal_mask_off_by_one_fails_the_book_causality_test():
    learner = SimpleNamespace(MultiHeadAttention=MaskDiagonalOffByOne)
    with pytest.raises(AssertionError) as failure:
        book_tests("test_model").test_attention_is_causal(learner, Impl("reference"))
    message = str(failure.value)
    assert message.startswith(
        "first difference at MultiHeadAttention: the mask hides position 0 from itself"
    ), message
    assert "NaN at outputs 0-3[0, 0]" in message, message


# --- end to end: a learner's package checked by the book's own test ----------------------


def run_book_tests(tmp_path: Path, package: str, keyword: str, *extra: str):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "tests" / "book" / "test_model.py"),
            "--impl",
            package,
            "-k",
            keyword,
            "-q",
            "-p",
            "no:cacheprovider",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.checker  # the book tests in a child process on a learner's package (~10 s)
def test_final_norm_skipped_is_named_by_the_books_logits_test(tmp_path):
    learner = tmp_path / "learner"
    learner.mkdir()
    (learner / "__init__.py").write_text("")
    (learner / "model.py").write_text(
        textwrap.dedent(
            """
            import torch
            from reference.model import *  # noqa: F403
            from reference.model import GPTModel as _Book

            class GPTModel(_Book):
                def forward(self, in_idx):
                    _, seq_len = in_idx.shape
                    pos = self.pos_emb(torch.arange(seq_len, device=in_idx.device))
                    x = self.drop_emb(self.tok_emb(in_idx) + pos)
                    x = self.trf_blocks(x)
                    return self.out_head(x)  # final_norm forgotten
            """
        )
    )
    report = tmp_path / "report.json"
    result = run_book_tests(tmp_path, "learner", "gpt2_small_logits", "--ftkit-report", str(report))
    assert result.returncode == 1, result.stdout
    errors = "\n".join(line for line in result.stdout.splitlines() if line.startswith("E "))
    assert "first difference at final_norm" in errors, result.stdout
    assert "manual_seed(123)" not in errors, result.stdout  # the init-order message
    records = {r["name"]: r for r in json.loads(report.read_text())["exercises"]}
    message = records["GPTModel"]["message"]
    assert "outputs agree through trf_blocks; first difference at final_norm" in message, message


# --- step level (ftkit.steps): inside attention, LayerNorm and generate ----------------------

MHA_KWARGS = {"d_in": 12, "d_out": 12, "context_length": 8, "dropout": 0.0, "num_heads": 3}


class LearnerAttention(nn.Module):
    """A learner's own attention: other attribute names, einsum, keys computed first.

    `scale`, `offset` (the mask's diagonal) and `merge` change one step each.
    """

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        self.h, self.dk = num_heads, d_out // num_heads
        self.q = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.k = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.v = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.proj = nn.Linear(d_out, d_out)
        self.drop = nn.Dropout(dropout)
        self.scale, self.offset, self.merge = self.dk**0.5, 1, "transpose"

    def forward(self, x):
        n, t, c = x.shape
        k = self.k(x).reshape(n, t, self.h, self.dk).permute(0, 2, 1, 3)
        q = self.q(x).reshape(n, t, self.h, self.dk).permute(0, 2, 1, 3)
        v = self.v(x).reshape(n, t, self.h, self.dk).permute(0, 2, 1, 3)
        att = torch.einsum("bhqd,bhkd->bhqk", q, k) / self.scale
        hidden = torch.ones(t, t).triu(self.offset).bool()
        att = self.drop(att.masked_fill(hidden, float("-inf")).softmax(-1))
        y = torch.einsum("bhqk,bhkd->bhqd", att, v)
        y = y.permute(0, 2, 1, 3) if self.merge == "transpose" else y
        return self.proj(y.reshape(n, t, c))


def learner_attention(**change) -> LearnerAttention:
    torch.manual_seed(1)
    module = LearnerAttention(**MHA_KWARGS)
    for name, value in change.items():
        setattr(module, name, value)
    return module


@pytest.mark.parametrize(
    "change, words",
    [
        ({"offset": 2}, ["lets position 0 see position 1", "diagonal offset"]),
        ({"offset": 0}, ["hides position 0 from itself"]),
        ({"scale": 4.0}, ["divided by 4 (head_dim itself)", "sqrt(4) = 2"]),
        ({"scale": 1.0}, ["divided by 1 (not scaled)"]),
        ({"merge": "view"}, ["merged without transpose(1, 2)"]),
    ],
    ids=["diagonal offset", "diagonal 0", "head_dim", "no scale", "merge"],
)
def test_attention_steps_are_named_on_a_learners_own_class(change, words):
    x = torch.rand(2, 7, 12)
    text = steps.describe_attention(learner_attention(**change), x, 3) or ""
    for word in words:
        assert word in text, text
    assert steps.describe_attention(learner_attention(), x, 3) is None


def test_a_learners_attention_class_is_diagnosed_with_the_books_weights_by_position():
    found = diagnose_model(
        lambda: learner_attention(scale=4.0),
        lambda: R.MultiHeadAttention(**MHA_KWARGS),
        [torch.rand(2, 7, 12)],
    )
    assert_names(found, ["first difference at MultiHeadAttention", "divided by 4"])


class ScaleAfterSoftmax(R.MultiHeadAttention):
    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (
            m(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
            for m in (self.W_query, self.W_key, self.W_value)
        )
        scores = (q @ k.transpose(2, 3)).masked_fill(self.mask.bool()[:n, :n], -torch.inf)
        weights = torch.softmax(scores, dim=-1) / self.head_dim**0.5
        return self.out_proj((weights @ v).transpose(1, 2).contiguous().view(b, n, self.d_out))


def test_attention_steps_are_named_on_reference_copies():
    x = torch.rand(2, 7, 12)
    torch.manual_seed(1)
    for cls, word in (
        (ScaleAfterSoftmax, "after the softmax"),
        (HeadsNotTransposed, "split with .view(b, heads, tokens, head_dim)"),
        (ScaleBySqrtDOut, "sqrt of d_out"),
    ):
        text = steps.describe_attention(cls(**MHA_KWARGS), x, 3) or ""
        assert word in text, (cls.__name__, text)
    assert steps.describe_attention(R.MultiHeadAttention(**MHA_KWARGS), x, 3) is None


class LearnerLayerNorm(nn.Module):
    """A learner's LayerNorm: gamma/beta, std computed with torch.var_mean, `how` one change."""

    def __init__(self, emb_dim, how="book"):
        super().__init__()
        self.gamma, self.beta, self.how = nn.Parameter(torch.ones(emb_dim)), None, how
        self.beta = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=self.how == "unbiased")
        if self.how == "eps outside":
            return self.gamma * ((x - mean) / (var.sqrt() + 1e-5)) + self.beta
        return self.gamma * ((x - mean) / (var + 1e-5).sqrt()) + self.beta


@pytest.mark.parametrize(
    "how, word",
    [("eps outside", "eps added outside the square root"), ("unbiased", "unbiased variance")],
)
def test_layernorm_steps_are_named_on_a_learners_own_class(how, word):
    assert word in (steps.describe_layernorm(LearnerLayerNorm(8, how), 8) or "")
    assert steps.describe_layernorm(LearnerLayerNorm(8), 8) is None


def test_layernorm_steps_are_named_on_reference_copies():
    text = steps.describe_layernorm(LayerNormWithoutEps(8), 8) or ""
    assert "no eps" in text, text
    assert steps.describe_layernorm(R.LayerNorm(8), 8) is None


def learner_generate(crop="last", temperature_last=False):
    """A learner's generate: its own loop, temperature before top-k (the same tokens)."""

    def generate(
        model, idx, max_new_tokens, context_size, temperature=0.0, top_k=None, eos_id=None
    ):
        for _ in range(max_new_tokens):
            window = idx[:, -context_size:] if crop == "last" else idx[:, :context_size]
            with torch.no_grad():
                logits = model(window)[:, -1, :]
            if temperature > 0 and not temperature_last:
                logits = logits / temperature
            if top_k:
                kth = logits.topk(top_k, dim=-1).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            if temperature > 0:
                probs = (
                    logits.softmax(-1) if not temperature_last else logits.softmax(-1) / temperature
                )
                nxt = torch.multinomial(probs, 1)
            else:
                nxt = logits.argmax(-1, keepdim=True)
            if eos_id is not None and nxt.item() == eos_id:
                break
            idx = torch.cat([idx, nxt], dim=1)
        return idx

    return generate


def test_generate_steps_are_named_on_a_learners_own_function():
    assert steps.describe_generate(learner_generate()) is None
    text = steps.describe_generate(learner_generate(crop="first")) or ""
    assert "your crop keeps the first 3 tokens, the book keeps the last 3" in text, text
    text = steps.describe_generate(learner_generate(temperature_last=True)) or ""
    assert "temperature applied after the softmax" in text, text


def test_generate_steps_are_named_on_reference_copies():
    import reference.generation as G

    assert steps.describe_generate(G.generate) is None
    source = Path(G.__file__).read_text()
    namespace: dict = {"__name__": "variant"}
    exec(
        compile(
            source.replace("torch.topk(logits, top_k)", "torch.topk(logits, top_k + 1)"),
            "v",
            "exec",
        ),
        namespace,
    )  # noqa: S102
    assert "top-k keeping k + 1" in (steps.describe_generate(namespace["generate"]) or "")


def test_raw_torch_errors_get_a_lesson_and_the_learners_line():
    learner = "import torch\nlogits = torch.zeros(2, 5)\n" + (
        "loss = torch.nn.functional.cross_entropy(logits, torch.tensor([1, -100]), "
        "ignore_index=50256)\n"
    )
    try:
        exec(compile(learner, "/learner/training.py", "exec"), {})  # noqa: S102
    except IndexError as err:
        text = teach_error(err, ["calc_loss_batch"]) or ""
    assert "ignore_index=-100" in text, text
    assert "raised at /learner/training.py:3)" in text, text
    try:
        torch.zeros(16, 8) + torch.zeros(8, 16)
    except RuntimeError as err:
        assert "(A @ B).T" in (teach_error(err, ["merge_lora"]) or "")
        assert teach_error(err, ["calc_loss_batch"]) is None
