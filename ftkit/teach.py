"""What a failing book test tells the learner: the step that differs, or what a raw error means.

Three kinds of failure reach a learner from a book test:

- the book's values returned in another order (`random_split` giving (train, test,
  validation)): `ftkit.check.returns.swapped_order` says so, whatever else fails after it;

- an assertion on the output: `explain_failure` asks the exercise's step describer
  (`ftkit.steps`) which step of the book's listing the learner's code first computes
  otherwise, and puts that first;
- an error raised from deep inside torch by the learner's code ("Target -100 is out of
  bounds", "The size of tensor a (16) must match ..."): `teach_error` maps the error
  and the exercise it came from to the likely mistake, and names the learner's line.

`tests/book/conftest.py` calls `explain_failure` for every failing book test.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from ftkit import steps
from ftkit.check.returns import swapped_order

ROOT = Path(__file__).resolve().parents[1]


def _layernorm(impl) -> str | None:
    return steps.describe_layernorm(impl.LayerNorm(emb_dim=8), 8)


def _attention(impl) -> str | None:
    with steps._seeded(123):
        module = impl.MultiHeadAttention(
            d_in=12, d_out=12, context_length=8, dropout=0.0, num_heads=3
        )
        x = torch.rand(2, 7, 12)
    return steps.describe_attention(module, x, 3)


# Exercise -> what names the step that differs, given the implementation under test.
DESCRIBERS: dict[str, Callable[[object], str | None]] = {
    "LayerNorm": _layernorm,
    "MultiHeadAttention": _attention,
    "generate": lambda impl: steps.describe_generate(impl.generate),
    "generate_text_simple": lambda impl: steps.describe_generate_simple(impl.generate_text_simple),
    "GELU": lambda impl: steps.describe_gelu(impl.GELU()),
    "calc_loss_batch": lambda impl: steps.describe_loss_batch(impl.calc_loss_batch),
    "calc_loss_loader": lambda impl: steps.describe_loss_loader(
        impl.calc_loss_loader, impl.calc_loss_batch, classes=10, per_token=True
    ),
    "classifier.calc_loss_loader": lambda impl: steps.describe_loss_loader(
        impl.of("classifier").calc_loss_loader,
        impl.of("classifier").calc_loss_batch,
        classes=2,
        per_token=False,
    ),
    "calc_accuracy_loader": lambda impl: steps.describe_accuracy(impl.calc_accuracy_loader),
    "custom_collate_fn": lambda impl: steps.describe_collate(impl.custom_collate_fn),
    "extract_response": lambda impl: steps.describe_extract(impl.extract_response),
    "FeedForward": lambda impl: steps.describe_feedforward(impl.FeedForward({"emb_dim": 8}), 8),
    "evaluate_model": lambda impl: steps.describe_evaluate(
        impl.evaluate_model, classes=10, per_token=True
    ),
    "classifier.evaluate_model": lambda impl: steps.describe_evaluate(
        impl.of("classifier").evaluate_model, classes=2, per_token=False
    ),
    "split_data": lambda impl: steps.describe_split(impl.split_data),
}


def describe(exercises: list[str], impl) -> str | None:
    """The first describer's answer for the test's exercises, or None."""
    for exercise in exercises:
        describer = DESCRIBERS.get(exercise)
        if describer is None:
            continue
        try:
            with torch.random.fork_rng(devices=[]):
                text = describer(impl)
        except Exception:  # noqa: BLE001 - no step diagnosis: the test's message stands
            text = None
        if text:
            return text
    return None


# (exercise or "" for any, error text pattern, the likely mistake)
ERROR_LESSONS: list[tuple[str, str, str]] = [
    (
        "",
        r"Target -?\d+ is out of bounds",
        "cross_entropy met a target it cannot ignore: the collate marks padding with -100 and "
        "cross_entropy ignores -100 by default (ignore_index=-100); an ignore_index set to "
        "another id (50256?) makes -100 an out-of-range class",
    ),
    (
        "merge_lora",
        r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)",
        "the LoRA product A @ B is (in_features, out_features) and the Linear weight "
        "(out_features, in_features): the book adds alpha * (A @ B).T, transposed",
    ),
    (
        "LoRALayer LinearWithLoRA",
        r"empty\(\)|argument 'size'|must be tuple of ints|received an invalid combination",
        "LoRALayer(in_dim, out_dim, rank, alpha): A is torch.empty(in_dim, rank) and B "
        "torch.zeros(rank, out_dim); a float where an int size belongs means the arguments "
        "are in another order (alpha and rank swapped?)",
    ),
    (
        "LinearWithLoRA",
        r"mat1 and mat2 shapes cannot be multiplied",
        "LinearWithLoRA builds LoRALayer(linear.in_features, linear.out_features, rank, alpha): "
        "the shapes of A and B follow the wrapped Linear's",
    ),
    (
        "MultiHeadAttention",
        r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)",
        "the causal mask is context_length x context_length and the input has fewer tokens: "
        "slice it to the input's length, self.mask.bool()[:num_tokens, :num_tokens]",
    ),
    (
        "",
        r"Expected target size",
        "cross_entropy takes logits of shape (N, classes) and targets of shape (N,): merge the "
        "batch and token dimensions with logits.flatten(0, 1) and target_batch.flatten()",
    ),
    (
        "",
        r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)",
        "a Linear layer got inputs of width {1} but its weight expects {2}: a layer's "
        "in_features must equal the width of what it is given (the classification head: "
        "Linear(emb_dim, num_classes))",
    ),
    (
        "SpamDataset",
        r"unsupported operand type\(s\) for -: 'list' and 'int'",
        "the padding length is a list, not a number: with max_length=None the book pads to "
        "the length of the longest encoded text, max(len(ids) for ids in encoded_texts) "
        "(§6.3), not to the longest text itself (max(encoded_texts, key=len))",
    ),
    (
        "",
        r"stack expects each tensor to be equal size",
        "the rows of the batch have different lengths: every row is padded to the batch's "
        "longest with the pad token before torch.stack",
    ),
    (
        "",
        r"Sizes of tensors must match except in dimension",
        "torch.cat got tensors of other shapes: the next token must be (batch, 1) "
        "(argmax(..., keepdim=True) or multinomial(..., num_samples=1)) to be appended to "
        "idx along dim=1",
    ),
    (
        "",
        r"index out of range in self",
        "an embedding got an id or position beyond its table: token ids must be below "
        "vocab_size and positions below context_length (crop the input to the last "
        "context_size tokens)",
    ),
    (
        "",
        r"probability tensor contains either `inf`, `nan` or element < 0",
        "torch.multinomial got invalid probabilities: sample from softmax(logits / "
        "temperature), after top-k has set the other logits to -inf (not the probabilities)",
    ),
]


def learner_line(tb) -> str:
    """`file:line: code` of the innermost frame outside torch, the kit and the tests."""
    where = ""
    for frame in traceback.extract_tb(tb):
        path = Path(frame.filename)
        if "site-packages" in path.parts or "torch" in path.parts:
            continue
        try:
            rel = path.resolve().relative_to(ROOT)
        except ValueError:
            rel = path
        if rel.parts and rel.parts[0] in ("tests", "ftkit", "conftest.py"):
            continue
        code = (frame.line or "").strip()
        where = f"{rel}:{frame.lineno}" + (f": {code}" if code else "")
    return where


def teach_error(err: BaseException, exercises: list[str]) -> str | None:
    """A teaching first line for an error raised inside the learner's code, or None."""
    text = str(err)
    for exercise, pattern, lesson in ERROR_LESSONS:
        if exercise and not set(exercise.split()) & set(exercises):
            continue
        found = re.search(pattern, text)
        if found:
            lesson = lesson.format(*found.groups()) if found.groups() else lesson
            where = learner_line(err.__traceback__)
            at = f" (raised at {where})" if where else ""
            return f"{lesson}{at}"
    return None


def explain_failure(err: BaseException, exercises: list[str], impl) -> str | None:
    """The line to put before a failing book test's own message, or None to leave it."""
    if isinstance(err, NotImplementedError):  # a stub: "not started", not a mistake
        return None
    order = swapped_order(impl, exercises) if impl is not None else None
    if order:  # right values in another order: the later failures all follow from it
        return None if order in str(err) else order
    if isinstance(err, AssertionError):
        if impl is None:
            return None
        text = describe(exercises, impl)
        return None if text and text in str(err) else text  # not twice
    if isinstance(err, Exception):
        return teach_error(err, exercises) or (describe(exercises, impl) if impl else None)
    return None
