"""Low-rank adaptation (LoRA) of a GPT model's linear layers (book Appendix E, exercise 7.4).

A frozen weight W is adapted by a trainable low-rank product: the layer computes
`x @ W.T + b + alpha * (x @ A @ B)`. With B initialised to zeros the adapted
model starts out computing exactly what the pretrained one did, and only
`rank * (in + out)` numbers per layer are trained instead of `in * out`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALayer(nn.Module):
    """The low-rank update `alpha * (x @ A @ B)` added to a frozen linear layer (book Appendix E)."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        if rank < 1:  # kit: a clear error
            raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
        self.A = torch.nn.Parameter(torch.empty(in_dim, rank))
        # The same initialisation nn.Linear gives its weight: small random values.
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        # B starts at zero, so the update is zero and the model's outputs are unchanged at first.
        self.B = torch.nn.Parameter(torch.zeros(rank, out_dim))
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.alpha * (x @ self.A @ self.B)
        return x


class LinearWithLoRA(nn.Module):
    """A linear layer plus its LoRA update: `linear(x) + lora(x)` (book Appendix E)."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if not isinstance(linear, nn.Linear):  # kit: a clear error
            raise TypeError(f"LinearWithLoRA wraps an nn.Linear, got {type(linear).__name__}")
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)
        # kit: create the LoRA weights where the wrapped layer lives (e.g. on the GPU)
        self.lora.to(device=linear.weight.device, dtype=linear.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.lora(x)


def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Wrap every `nn.Linear` inside `model` (recursively, in place) in `LinearWithLoRA` (book Appendix E).

    Freeze the model first (`freeze_model`): the LoRA weights created here stay
    trainable, so only they are updated. Returns `model` for chaining.
    """
    for name, module in model.named_children():
        if isinstance(module, torch.nn.Linear):
            setattr(model, name, LinearWithLoRA(module, rank, alpha))
        else:
            replace_linear_with_lora(module, rank, alpha)
    return model  # kit: for chaining


def freeze_model(model: nn.Module) -> nn.Module:
    """Make every parameter of `model` non-trainable (book Appendix E: freeze, then add LoRA)."""
    for param in model.parameters():
        param.requires_grad = False
    return model


def count_trainable_parameters(model: nn.Module) -> int:
    """The number of parameters the optimizer would update (book Appendix E prints it)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_lora(layer: LinearWithLoRA) -> nn.Linear:
    """A plain `nn.Linear` computing what `layer` does: weight W + alpha * (A @ B)^T (book Appendix E).

    nn.Linear stores W as (out, in) and computes x @ W.T, while LoRA computes
    x @ A @ B with A @ B of shape (in, out); hence the transpose.
    """
    if not isinstance(layer, LinearWithLoRA):
        raise TypeError(f"merge_lora expects a LinearWithLoRA, got {type(layer).__name__}")
    linear, lora = layer.linear, layer.lora
    merged = nn.Linear(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        device=linear.weight.device,
        dtype=linear.weight.dtype,
    )
    with torch.no_grad():
        merged.weight.copy_(linear.weight + lora.alpha * (lora.A @ lora.B).T)
        if linear.bias is not None:
            merged.bias.copy_(linear.bias)
    merged.weight.requires_grad = linear.weight.requires_grad
    if merged.bias is not None:
        merged.bias.requires_grad = linear.bias.requires_grad
    return merged


def merge_lora_weights(model: nn.Module) -> nn.Module:
    """Replace every `LinearWithLoRA` inside `model` (in place) by its merged `nn.Linear`.

    The merged model has the original architecture and state_dict layout, so it
    saves and loads like a fully fine-tuned one and runs without LoRA's extra matmuls.
    """
    for name, module in model.named_children():
        if isinstance(module, LinearWithLoRA):
            setattr(model, name, merge_lora(module))
        else:
            merge_lora_weights(module)
    return model
