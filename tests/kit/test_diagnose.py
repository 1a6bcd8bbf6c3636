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
from ftkit.asserts import assert_tensor_equal
from ftkit.check.impl import Impl
from ftkit.diagnose import Diagnosis, diagnose, diagnose_model, pretty

ROOT = Path(__file__).resolve().parents[2]
CFG = R.get_config("tiny", context_length=16, drop_rate=0.1)
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
        ["first difference at trf_blocks[0]", "TransformerBlock.forward", "shortcut"],
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
    assert_names(found, ["first difference at TransformerBlock", "drop_shortcut (call 2)"])


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
