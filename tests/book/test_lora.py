"""LoRA (book Appendix E, exercise 7.4): initialisation, wrapping, freezing, counts, merging."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ftkit.asserts import assert_equal, assert_tensor_equal
from ftkit.presets import get_config

pytestmark = pytest.mark.stage("LoRA")

RANK, ALPHA = 4, 8.0


def tiny_gpt(ref, seed: int = 123) -> nn.Module:
    torch.manual_seed(seed)
    return ref.GPTModel(get_config("tiny", context_length=32))


def token_batch(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 50257, (2, 12), generator=torch.Generator().manual_seed(seed))


@pytest.mark.exercise("LoRALayer")
def test_lora_layer_is_initialised_as_the_book(impl):
    torch.manual_seed(123)
    layer = impl.LoRALayer(16, out_dim=24, rank=RANK, alpha=ALPHA)
    torch.manual_seed(123)
    expected_A = torch.empty(16, RANK)
    nn.init.kaiming_uniform_(expected_A, a=math.sqrt(5))
    assert_tensor_equal(
        layer.A.detach(),
        expected_A,
        name="A",
        why="A is (in_dim, rank), drawn with kaiming_uniform_(a=sqrt(5)) like nn.Linear's weight",
    )
    assert_tensor_equal(
        layer.B.detach(),
        torch.zeros(RANK, 24),
        name="B",
        why="B is (rank, out_dim) zeros, so the LoRA update starts at exactly zero",
    )
    assert isinstance(layer.A, nn.Parameter) and isinstance(layer.B, nn.Parameter), (
        "A and B must be nn.Parameter so the optimizer trains them"
    )


@pytest.mark.exercise("LoRALayer")
def test_lora_layer_computes_alpha_x_a_b(impl):
    torch.manual_seed(1)
    layer = impl.LoRALayer(16, out_dim=24, rank=RANK, alpha=ALPHA)
    with torch.no_grad():
        layer.B.normal_()
    x = torch.randn(3, 5, 16)
    assert_tensor_equal(
        layer(x).detach(),
        ALPHA * (x @ layer.A.detach() @ layer.B.detach()),
        name="lora(x)",
        atol=1e-5,
        why="the LoRA update is alpha * (x @ A @ B)",
    )


def test_lora_layer_rejects_a_zero_rank(ref):
    with pytest.raises(ValueError, match="rank"):
        ref.LoRALayer(16, 24, 0, ALPHA)


@pytest.mark.exercise("LinearWithLoRA")
def test_linear_with_lora_starts_equal_to_the_wrapped_layer(impl):
    torch.manual_seed(2)
    linear = nn.Linear(16, 24)
    wrapped = impl.LinearWithLoRA(linear, rank=RANK, alpha=ALPHA)
    x = torch.randn(4, 16)
    assert wrapped.linear is linear, "LinearWithLoRA keeps the original layer as `.linear`"
    assert_tensor_equal(
        wrapped(x).detach(),
        linear(x).detach(),
        name="LinearWithLoRA(x)",
        why="B starts at zero, so at initialisation the adapted layer computes what the original did",
    )


@pytest.mark.exercise("LinearWithLoRA", "replace_linear_with_lora")
@pytest.mark.book_exercise("7.4")
def test_replace_linear_with_lora_wraps_every_linear_and_keeps_outputs(impl, ref):
    model = tiny_gpt(ref)
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    x = token_batch()
    with torch.no_grad():
        before = model(x)
    impl.replace_linear_with_lora(model, rank=RANK, alpha=ALPHA)
    wrapped = [m for m in model.modules() if isinstance(m, impl.LinearWithLoRA)]
    bare = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and not name.endswith(".linear")
    ]
    assert_equal(
        len(wrapped),
        n_linear,
        name="number of LinearWithLoRA",
        why="every nn.Linear (attention, feed-forward, out_head) is wrapped, however deep",
    )
    assert not bare, f"these nn.Linear layers were not wrapped: {bare}"
    with torch.no_grad():
        after = model(x)
    assert_tensor_equal(
        after,
        before,
        name="logits",
        why="with B = 0 the LoRA model's outputs equal the original model's",
    )


@pytest.mark.exercise("count_trainable_parameters", "freeze_model")
@pytest.mark.book_exercise("7.4")
def test_freeze_then_lora_leaves_only_lora_parameters_trainable(impl, ref):
    model = tiny_gpt(ref)
    impl.freeze_model(model)
    assert_equal(
        impl.count_trainable_parameters(model), 0, name="trainable after freezing", why=None
    )
    ref.replace_linear_with_lora(model, RANK, ALPHA)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    not_lora = [n for n in trainable if not (n.endswith("lora.A") or n.endswith("lora.B"))]
    assert trainable, "the LoRA weights added after freezing must stay trainable"
    assert not not_lora, f"only LoRA's A and B should train, but these do too: {not_lora}"


@pytest.mark.exercise("count_trainable_parameters", "freeze_model", "replace_linear_with_lora")
def test_book_parameter_counts_for_the_124m_classifier(impl, golden):
    """Appendix E prints these for GPT-2 124M with a 2-class head; built on the meta device (no memory)."""
    from ftkit.presets import get_config
    from reference.model import GPTModel

    counts = golden("lora")
    with torch.device("meta"):
        model = GPTModel(get_config("gpt2-small (124M)"))
        model.out_head = nn.Linear(768, 2)
    assert_equal(
        impl.count_trainable_parameters(model),
        counts["total_trainable_before"],
        name="total trainable parameters before",
        why="GPT-2 124M with the untied output head replaced by a 2-class head (book Appendix E)",
    )
    impl.freeze_model(model)
    assert_equal(
        impl.count_trainable_parameters(model),
        counts["trainable_after_freezing"],
        name="trainable after freezing",
        why="freeze the whole model before adding LoRA (book Appendix E)",
    )
    with torch.device("meta"):
        impl.replace_linear_with_lora(model, rank=16, alpha=16)
    assert_equal(
        impl.count_trainable_parameters(model),
        counts["lora_trainable_rank16"],
        name="LoRA trainable parameters (rank 16)",
        why="each Linear(in, out) gains rank * (in + out) trainable numbers (book Appendix E)",
    )


def train_a_few_steps(model: nn.Module, steps: int = 3) -> None:
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1
    )
    for step in range(steps):
        x = token_batch(seed=10 + step)
        logits = model(x[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_training_changes_only_lora_weights(ref):
    model = tiny_gpt(ref)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref.freeze_model(model)
    ref.replace_linear_with_lora(model, RANK, ALPHA)
    train_a_few_steps(model)
    for name, param in model.named_parameters():
        original = name.replace(".linear.", ".") if ".linear." in name else name
        if "lora." in name:
            continue
        assert_tensor_equal(
            param.detach(), frozen[original], name=name, why="frozen weights never change"
        )
    moved = [n for n, p in model.named_parameters() if n.endswith("lora.B") and p.abs().sum() > 0]
    assert moved, "training should move LoRA's B away from zero"


@pytest.mark.exercise("LinearWithLoRA", "merge_lora")
def test_merge_lora_gives_a_plain_linear_with_the_same_outputs(impl):
    torch.manual_seed(3)
    wrapped = impl.LinearWithLoRA(nn.Linear(16, 24), rank=RANK, alpha=ALPHA)
    with torch.no_grad():
        wrapped.lora.B.normal_(std=0.1)
    merged = impl.merge_lora(wrapped)
    assert type(merged) is nn.Linear, f"merge_lora should return nn.Linear, got {type(merged)}"
    x = torch.randn(5, 16)
    assert_tensor_equal(
        merged(x).detach(),
        wrapped(x).detach(),
        name="merged(x)",
        atol=1e-5,
        why="x @ (W + alpha (A B)^T)^T + b = x @ W^T + b + alpha x A B",
    )


@pytest.mark.exercise(
    "LinearWithLoRA", "freeze_model", "merge_lora_weights", "replace_linear_with_lora"
)
def test_merged_model_matches_the_trained_lora_model(impl, ref):
    model = tiny_gpt(ref)
    plain_keys = list(model.state_dict())
    # LoRA's own classes interlock (merging looks for its LinearWithLoRA), so all from impl.
    impl.freeze_model(model)
    impl.replace_linear_with_lora(model, rank=RANK, alpha=ALPHA)
    train_a_few_steps(model)
    x = token_batch(seed=99)
    with torch.no_grad():
        unmerged = model(x)
    impl.merge_lora_weights(model)
    assert not any(isinstance(m, impl.LinearWithLoRA) for m in model.modules()), (
        "merge_lora_weights must replace every LinearWithLoRA"
    )
    assert_equal(
        list(model.state_dict()),
        plain_keys,
        name="state_dict keys after merging",
        why="a merged model has the original GPTModel layout, so it saves and loads like one",
    )
    with torch.no_grad():
        merged = model(x)
    assert_tensor_equal(
        merged, unmerged, name="logits", atol=1e-5, why="merging must not change the outputs"
    )
