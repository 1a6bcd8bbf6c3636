"""First-divergence diagnosis: which submodule of a learner's model first computes something else.

When an implementation's `GPTModel` (or `TransformerBlock`, `MultiHeadAttention`)
gives other outputs than the book's, a failing comparison of logits says *that*
they differ, not *where*. `diagnose_model` finds where:

1. compare the two `state_dict` layouts (missing, unexpected, mis-shaped keys);
2. copy the reference's parameters into the implementation, run both on the same
   input with forward hooks on every submodule, in eval mode (no dropout), and
   report the first submodule whose output differs while its input agrees, or the
   parent whose forward skips a child or combines its children differently;
3. if eval mode agrees, do the same in training mode with the same seed before each
   run (dropout in another place draws other random numbers);
4. only if the same weights give the same outputs in both modes, compare the initial
   weights under `torch.manual_seed(seed)`: then the layers are created in another order.

Where the first difference lies inside a module the book writes step by step (attention,
LayerNorm), `ftkit.steps` names the step inside it (the mask, the scale, the variance ...)
instead of the module's whole recipe. A learner's class with other attribute names but the
book's parameters in the book's order gets the book's weights by position.

Every function leaves its arguments and the global RNG as they were.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ftkit import steps

# What the book's code does in each module, with its section (keyed by the reference's class names).
HINTS: dict[str, str] = {
    "LayerNorm": "§4.2: mean and variance over the last dimension (keepdim=True), the biased "
    "variance (unbiased=False), (x - mean) / sqrt(var + eps) with eps=1e-5, then "
    "scale * norm + shift",
    "GELU": "§4.3: the tanh approximation 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))",
    "FeedForward": "§4.3: Linear(emb, 4·emb), GELU, Linear(4·emb, emb)",
    "MultiHeadAttention": "§3.6: heads via .view(b, tokens, heads, head_dim).transpose(1, 2); "
    "scores = queries @ keys.transpose(2, 3); mask above the diagonal (triu(..., diagonal=1)) "
    "filled with -inf; softmax(scores / head_dim**0.5); dropout on the attention weights; "
    "context transposed back (1, 2), .contiguous().view(b, tokens, d_out); out_proj",
    "TransformerBlock": "§4.5: x = x + drop_shortcut(att(norm1(x))), then "
    "x = x + drop_shortcut(ff(norm2(x))): a shortcut around each sub-layer",
    "GPTModel": "§4.6: drop_emb(tok_emb(in_idx) + pos_emb(arange(seq_len))), trf_blocks, "
    "final_norm, out_head",
}

ATOL = 1e-5
RTOL = 1e-4
MAX_KEYS = 5


@dataclass(frozen=True)
class Call:
    """One call of a submodule during a forward pass: its inputs and output tensors."""

    name: str  # "" for the root, "trf_blocks.0.att" for a submodule
    index: int  # the n-th call of this submodule in the pass (drop_shortcut runs twice)
    kind: str  # class name
    inputs: tuple[torch.Tensor, ...]
    output: tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Diagnosis:
    """Where an implementation first departs from the reference, in words.

    `kind` is "layout" (state_dict keys/shapes), "computation" (a submodule computes
    something else), "wiring" (a parent's forward skips or combines children
    differently), "error" (the forward raised), "init_order" (same computation, other
    initial weights) or "none". `text`'s first line is the summary.
    """

    kind: str
    text: str
    where: str = ""
    details: list[str] = field(default_factory=list)

    @property
    def init_order(self) -> bool:
        return self.kind == "init_order"


def pretty(name: str, root: str = "model") -> str:
    """`trf_blocks.0.att` -> `trf_blocks[0].att`; the root module is called `root`."""
    if not name:
        return root
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", name)


def _flat_tensors(value) -> tuple[torch.Tensor, ...]:
    if isinstance(value, torch.Tensor):
        return (value.detach().clone(),)
    if isinstance(value, (tuple, list)):
        return tuple(t for v in value for t in _flat_tensors(v))
    if isinstance(value, dict):
        return tuple(t for v in value.values() for t in _flat_tensors(v))
    return ()


def gap(actual: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]) -> str | None:
    """None where the tensors agree (within ATOL + RTOL·|expected|), else how they differ."""
    if len(actual) != len(expected):
        return f"{len(actual)} tensors where the book's has {len(expected)}"
    for a, e in zip(actual, expected):
        if tuple(a.shape) != tuple(e.shape):
            return f"shape {list(a.shape)}, the book's {list(e.shape)}"
        if a.dtype != e.dtype and not (a.is_floating_point() and e.is_floating_point()):
            return f"dtype {a.dtype}, the book's {e.dtype}"
        if not a.is_floating_point():
            if not torch.equal(a, e):
                return f"{int((a != e).sum())} of {a.numel()} values differ"
            continue
        a64, e64 = a.double(), e.double()
        nan = torch.isnan(a64) & ~torch.isnan(e64)
        if bool(nan.any()):
            return f"NaN in {int(nan.sum())} of {a.numel()} values"
        if not torch.allclose(a64, e64, atol=ATOL, rtol=RTOL, equal_nan=True):
            diff = (a64 - e64).abs().nan_to_num(posinf=float("inf"))
            return f"max |Δ| {float(diff.max()):.3g}"
    return None


@contextmanager
def _same_rng(seed: int) -> Iterator[None]:
    """Seed torch's RNG for a block and give the caller's RNG state back afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def record_calls(
    model: nn.Module, inputs: Sequence[torch.Tensor], *, train: bool = False, seed: int = 0
) -> tuple[list[Call], BaseException | None]:
    """Run `model(*inputs)` with a forward hook on every submodule; the calls in completion order.

    A child completes before its parent, so the list is in the order outputs are made.
    If the forward raises, the calls made until then come back with the error.
    The model's train/eval mode is restored.
    """
    calls: list[Call] = []
    counts: dict[str, int] = {}
    handles = []

    def hook_for(name: str):
        def hook(module, args, kwargs, output):
            index = counts.get(name, 0)
            counts[name] = index + 1
            inputs_ = _flat_tensors(args) + _flat_tensors(kwargs)
            calls.append(Call(name, index, type(module).__name__, inputs_, _flat_tensors(output)))

        return hook

    was_training = model.training
    error = None
    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_hook(hook_for(name), with_kwargs=True))
        model.train(train)
        with _same_rng(seed), torch.no_grad():
            try:
                model(*inputs)
            except Exception as err:  # a learner's forward may crash: diagnose what ran
                error = err
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return calls, error


def compare_layout(actual: nn.Module, expected: nn.Module) -> list[str]:
    """Lines naming state_dict keys missing, unexpected, or shaped otherwise than the book's."""
    ours, theirs = actual.state_dict(), expected.state_dict()
    missing = [k for k in theirs if k not in ours]
    unexpected = [k for k in ours if k not in theirs]
    misshaped = [
        f"{k}: shape {list(ours[k].shape)}, the book's {list(theirs[k].shape)}"
        for k in theirs
        if k in ours and ours[k].shape != theirs[k].shape
    ]
    lines = []
    for label, items in (
        ("mis-shaped", misshaped),
        ("missing", missing),
        ("unexpected", unexpected),
    ):
        if items:
            shown = ", ".join(items[:MAX_KEYS]) + (
                f" and {len(items) - MAX_KEYS} more" if len(items) > MAX_KEYS else ""
            )
            lines.append(f"{label}: {shown}")
    return lines


def _param_problems(actual: nn.Module, expected: nn.Module) -> list[str]:
    """Parameter keys (not buffers) that keep the reference's weights from being copied in."""
    ours = dict(actual.named_parameters())
    theirs = dict(expected.named_parameters())
    problems = [k for k in theirs if k not in ours or ours[k].shape != theirs[k].shape]
    return problems + [k for k in ours if k not in theirs]


def same_shapes_in_order(actual: nn.Module, expected: nn.Module) -> bool:
    """The two modules' parameters have the same shapes in the same order (names aside)."""
    ours = [p.shape for p in actual.parameters()]
    return ours == [p.shape for p in expected.parameters()] and bool(ours)


def copy_by_position(source: nn.Module, target: nn.Module) -> None:
    """Copy `source`'s parameters into `target` in definition order (other attribute names)."""
    with torch.no_grad():
        for mine, theirs in zip(target.parameters(), source.parameters()):
            mine.copy_(theirs)


def describe_block(actual: nn.Module, x: torch.Tensor, book: nn.Module) -> str | None:
    """Which known rewiring of §4.5's block the learner's `TransformerBlock` computes.

    The book's weights are copied into a copy of `actual` (by name, else by position); both
    run in eval mode and the learner's output is compared with the book's sub-layers wired
    in each known other way.
    """
    mine = copy.deepcopy(actual).eval()
    if _param_problems(mine, book):
        if not same_shapes_in_order(mine, book):
            return None
        copy_by_position(book, mine)
    else:
        copy_parameters(book, mine)
    ref = copy.deepcopy(book).eval()
    att, ff, n1, n2 = ref.att, ref.ff, ref.norm1, ref.norm2
    with torch.no_grad():
        out = mine(x)
        h = x + att(n1(x))
        if isinstance(out, torch.Tensor) and steps.close(out, h + ff(n2(h))):
            return None
        post = n1(x + att(x))
        hypotheses = {
            "no shortcut around the feed-forward (x = ff(norm2(x)); the book adds x + ...)": ff(
                n2(h)
            ),
            "no shortcut around the attention (x = att(norm1(x)); the book adds x + ...)": (
                att(n1(x)) + ff(n2(att(n1(x))))
            ),
            "the norms after the shortcuts (post-norm: norm1(x + att(x))); the book normalises "
            "before each sub-layer (pre-norm)": n2(post + ff(post)),
            "norm1 before the feed-forward too; the book uses norm2 there": h + ff(n1(h)),
            "both sub-layers fed the same input (x + att(norm1(x)) + ff(norm2(x)))": h + ff(n2(x)),
        }
    found = [
        k for k, v in hypotheses.items() if isinstance(out, torch.Tensor) and steps.close(out, v)
    ]
    return f"your block computes {found[0]}" if len(found) == 1 else None


# The modules the book writes step by step: what names the step that differs inside one.
STEP_DESCRIBERS: dict[str, Callable[[nn.Module, torch.Tensor, nn.Module], str | None]] = {
    "MultiHeadAttention": lambda mine, x, book: steps.describe_attention(mine, x, book.num_heads),
    "LayerNorm": lambda mine, x, book: steps.describe_layernorm(mine, x.shape[-1]),
    "TransformerBlock": describe_block,
}


def describe_step(actual: nn.Module, expected: nn.Module, x: torch.Tensor) -> str | None:
    """The step inside `actual` that differs from the book's, for modules written step by step."""
    describe = STEP_DESCRIBERS.get(type(expected).__name__)
    if describe is None or not isinstance(x, torch.Tensor):
        return None
    try:
        return describe(actual, x, expected)
    except Exception:  # noqa: BLE001 - no step diagnosis: the module-level one stands
        return None


def _refine(
    found: Diagnosis,
    work: nn.Module,
    expected: nn.Module,
    inputs: Sequence[torch.Tensor],
    kind_of: dict[str, str],
    root: str,
) -> Diagnosis:
    """Name the step inside the step-by-step module (attention, LayerNorm) where `found` lies."""
    parts = found.where.split(".") if found.where else []
    for end in range(len(parts), -1, -1):
        name = ".".join(parts[:end])
        if kind_of.get(name) not in STEP_DESCRIBERS or not name:
            continue
        calls, _ = record_calls(expected, inputs)
        given = next((c.inputs for c in calls if c.name == name), ())
        try:
            mine = work.get_submodule(name)
        except AttributeError:
            return found
        text = describe_step(mine, expected.get_submodule(name), given[0]) if given else None
        if text:
            return Diagnosis(
                "computation", f"first difference at {pretty(name, root)}: {text}", name
            )
        return found
    return found


def copy_parameters(source: nn.Module, target: nn.Module) -> None:
    """Copy `source`'s parameters into `target` by name (buffers such as the mask stay target's).

    The mask is the learner's own computation, not a weight: copying it would hide a
    mask built with the wrong diagonal.
    """
    theirs = dict(source.named_parameters())
    with torch.no_grad():
        for name, param in target.named_parameters():
            param.copy_(theirs[name])


def _hint(kind_of: dict[str, str], name: str) -> tuple[str, str]:
    """(class name, book hint) for `name` or its nearest ancestor the book explains."""
    parts = name.split(".") if name else []
    for end in range(len(parts), -1, -1):
        kind = kind_of.get(".".join(parts[:end]), "")
        if kind in HINTS:
            return kind, HINTS[kind]
    return "", ""


def _compare_with(kind_of: dict[str, str], name: str) -> str:
    """The module's whole recipe, on a line of its own: every mistake in it prints it alike."""
    kind, hint = _hint(kind_of, name)
    return f"\n  compare {kind} with {hint}" if kind else ""


CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


def _owner(kind_of: dict[str, str], name: str) -> str:
    """The nearest ancestor of `name` whose forward is written by hand (not a container)."""
    parent = _parent(name)
    while parent and kind_of.get(parent) in CONTAINERS:
        parent = _parent(parent)
    return parent


def _parent(name: str) -> str:
    return name.rpartition(".")[0] if "." in name else ""


def _call_label(call: Call, totals: dict[str, int], root: str) -> str:
    label = pretty(call.name, root)
    return label if totals.get(call.name, 1) == 1 else f"{label} (call {call.index + 1})"


def first_divergence(
    actual_calls: list[Call],
    expected_calls: list[Call],
    kind_of: dict[str, str],
    *,
    root: str = "model",
) -> Diagnosis | None:
    """Walk the reference's calls in order; describe the first the implementation departs from.

    - a call the implementation never makes, followed by a difference: the parent's
      forward skips that child (a skipped call with everything after it agreeing is
      harmless, e.g. `for block in self.trf_blocks` instead of calling the Sequential);
    - an output that differs while the input agrees: that submodule computes something
      else (or, when all its children agree, its forward combines them differently);
    - an input that differs while everything before agrees: the parent's forward
      computes that input differently.
    """
    ours = {(c.name, c.index): c for c in actual_calls}
    totals: dict[str, int] = {}
    for c in expected_calls:
        totals[c.name] = totals.get(c.name, 0) + 1
    our_totals: dict[str, int] = {}
    for c in actual_calls:
        our_totals[c.name] = our_totals.get(c.name, 0) + 1
    agreed: list[Call] = []
    skipped: list[tuple[Call, str]] = []  # calls not made since the last agreeing one
    for call in expected_calls:
        label = _call_label(call, totals, root)
        through = (
            f"outputs agree through {_call_label(agreed[-1], totals, root)}; " if agreed else ""
        )
        mine = ours.get((call.name, call.index))
        parent = _parent(call.name) if call.name else ""
        if mine is None:
            if not any(n.startswith(call.name + ".") for n in our_totals):
                skipped.append((call, through))  # a container whose children ran is no skip
            continue
        in_gap = gap(mine.inputs, call.inputs)
        out_gap = gap(mine.output, call.output)
        if in_gap is None and out_gap is None:
            agreed.append(call)
            skipped = []
            continue
        if skipped:  # a call left out, then a difference: the leaving out is the cause
            first, through = skipped[0]
            owner = _owner(kind_of, first.name)
            made = our_totals.get(first.name, 0)
            name = pretty(first.name, root)
            how = (
                f"never calls {name}"
                if made == 0
                else f"calls {name} {made} time(s), the book {totals[first.name]}"
            )
            text = (
                f"{through}first difference at {_call_label(first, totals, root)}: "
                f"{kind_of.get(owner, '') or pretty(owner, root)}.forward {how}"
            )
            return Diagnosis("wiring", text + _compare_with(kind_of, owner), first.name)
        if in_gap is None:  # same input, other output: this module's own forward
            children = [
                c
                for c in agreed
                if c.name.startswith(call.name + ".") or (not call.name and c.name)
            ]
            if children:
                same_as = _equals_one_of(mine.output, children, totals, root)
                also = f" (it returns the output of {same_as} unchanged)" if same_as else ""
                text = (
                    f"{through}first difference at {label} ({out_gap}): the outputs of its "
                    f"submodules agree, so look at how {call.kind}.forward combines them{also}"
                )
                return Diagnosis("wiring", text + _compare_with(kind_of, call.name), call.name)
            text = f"{through}first difference at {label} ({out_gap})"
            return Diagnosis("computation", text + _compare_with(kind_of, call.name), call.name)
        # Its input differs though everything before agrees: the parent computed it.
        siblings = [c for c in agreed if _parent(c.name) == parent and c.name]
        named = ", ".join(dict.fromkeys(pretty(c.name, root) for c in siblings))
        while_ = f", while {named} agree" if named else ""
        same_as = _equals_one_of(mine.inputs, siblings, totals, root)
        also = f" (it passes on the output of {same_as} unchanged)" if same_as else ""
        extra = [
            f"calls {pretty(n, root)} {our_totals[n]} times, the book {totals[n]}"
            for n in dict.fromkeys(c.name for c in siblings)
            if our_totals.get(n, 0) > totals[n]
        ]
        also += f"; it {', '.join(extra)}" if extra else ""
        text = (
            f"{through}first difference at {pretty(parent, root)}: the input its forward gives "
            f"{pretty(call.name, root)} differs ({in_gap}){while_}{also}"
        )
        return Diagnosis("wiring", text + _compare_with(kind_of, parent), parent)
    return None


def _equals_one_of(
    tensors: tuple[torch.Tensor, ...], calls: list[Call], totals: dict[str, int], root: str
) -> str | None:
    """The label of a call whose output equals `tensors` (a shortcut or a step left out)."""
    for c in reversed(calls):
        if len(c.output) == len(tensors) and gap(tensors, c.output) is None:
            return _call_label(c, totals, root)
    return None


def _run_both(
    actual: nn.Module,
    expected: nn.Module,
    inputs: Sequence[torch.Tensor],
    kind_of: dict[str, str],
    *,
    train: bool,
    root: str,
) -> Diagnosis | None:
    mine, error = record_calls(actual, inputs, train=train, seed=0)
    theirs, _ = record_calls(expected, inputs, train=train, seed=0)
    if error is not None:
        mine_keys = {(c.name, c.index) for c in mine}
        before = [c for c in theirs if (c.name, c.index) in mine_keys]
        found = first_divergence(mine, before, kind_of, root=root)
        if found is not None:
            return found
        missing = [c for c in theirs if (c.name, c.index) not in mine_keys]
        at = missing[0].name if missing else ""
        text = (
            f"the forward raised {type(error).__name__}: {error} — first difference at "
            f"{pretty(at, root)}, which the book's forward calls next"
        )
        return Diagnosis("error", text + _compare_with(kind_of, at), at)
    found = first_divergence(mine, theirs, kind_of, root=root)
    if found is not None and train:
        found = Diagnosis(
            found.kind,
            found.text + " (seen in training mode with dropout on; in eval mode every output "
            "agrees: look at where dropout is applied)",
            found.where,
        )
    return found


def first_init_difference(actual: nn.Module, expected: nn.Module) -> str | None:
    """The first parameter (in the reference's order) whose initial values differ, if any."""
    ours = dict(actual.named_parameters())
    for name, param in expected.named_parameters():
        if (
            name not in ours
            or ours[name].shape != param.shape
            or not torch.equal(ours[name], param)
        ):
            return name
    return None


def diagnose(
    actual: nn.Module,
    expected: nn.Module,
    inputs: Sequence[torch.Tensor],
    *,
    seeded: bool = True,
    _owned: bool = False,
) -> Diagnosis:
    """Explain how `actual` departs from `expected` (the reference), both built under the same seed.

    `actual` is not modified (a copy receives the reference's weights). With `seeded`,
    the two were created right after the same `torch.manual_seed`, so differing
    initial weights with an identical computation mean another creation order.
    """
    root = type(expected).__name__
    kind_of = {name: type(m).__name__ for name, m in expected.named_modules()}
    problems = _param_problems(actual, expected)
    layout = compare_layout(actual, expected)
    by_position = bool(problems) and same_shapes_in_order(actual, expected)
    if inputs and type(expected).__name__ in STEP_DESCRIBERS:
        text = describe_step(actual, expected, inputs[0])
        if text:
            return Diagnosis("computation", f"first difference at {root}: {text}", "", layout)
    if problems and not by_position:
        first = problems[0]
        text = (
            f"first difference at {pretty(first, root)}: the state_dict differs from the book's, "
            f"so the book's weights cannot be copied in ({'; '.join(layout)})"
        )
        return Diagnosis("layout", text + _compare_with(kind_of, _parent(first)), first, layout)
    init_diff = first_init_difference(actual, expected) if seeded else None
    work = actual if _owned else copy.deepcopy(actual)  # _owned: built for the diagnosis alone
    (copy_by_position if by_position else copy_parameters)(expected, work)
    for train in (False, True):
        found = _run_both(work, expected, inputs, kind_of, train=train, root=root)
        if found is not None:
            found = _refine(found, work, expected, inputs, kind_of, root)
            return Diagnosis(found.kind, found.text, found.where, layout)
    if init_diff is not None:
        text = (
            f"with the book's weights copied in, every output agrees, but the initial weights "
            f"differ from {pretty(init_diff, root)} on: the layers are created in another order "
            f"than the book's"
        )
        return Diagnosis("init_order", text, init_diff, layout)
    text = "no difference found: the same weights give the same outputs in eval and training mode"
    if seeded:
        text += ", and the seeded initial weights agree"
    return Diagnosis("none", text, "", layout)


Factory = Callable[[], nn.Module]


def diagnose_model(
    make_actual: Factory,
    make_expected: Factory,
    inputs: Sequence[torch.Tensor],
    *,
    seed: int = 123,
    quick: tuple[Factory, Factory] | None = None,
) -> Diagnosis:
    """Build both models under `torch.manual_seed(seed)` and `diagnose` them; the RNG is left as it was.

    `quick`: factories of a smaller config of the same models, tried first. Its answer is
    kept when it locates a computation or wiring difference (one the code has at any size);
    otherwise (layout, error, init order, none: possibly artefacts of the smaller config)
    the full-size models decide.
    """
    if quick is not None:
        found = diagnose_model(*quick, inputs, seed=seed)
        if found.kind in ("computation", "wiring"):
            return found
    with _same_rng(seed):
        actual = make_actual()
    with _same_rng(seed):
        expected = make_expected()
    return diagnose(actual, expected, inputs, seeded=True, _owned=True)


def annotate(error: AssertionError, diagnosis: Diagnosis, *, init_why: str | None = None) -> str:
    """A failure message: the diagnosis first, then the comparison that failed.

    `init_why` (the book's reason seeded weights must match) is added to the comparison's
    first line only when the diagnosis is that the initialisation order differs.
    """
    message = str(error)
    if diagnosis.init_order and init_why:
        first, _, rest = message.partition("\n")
        message = f"{first} — {init_why}" + (f"\n{rest}" if rest else "")
    lines = [diagnosis.text, message]
    if diagnosis.details and diagnosis.kind != "layout":
        lines.append("state_dict: " + "; ".join(diagnosis.details))
    return "\n".join(lines)
