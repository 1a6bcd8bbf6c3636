"""Your LoRA (book Appendix E, exercise 7.4). Replace each `raise` with your code.

A frozen weight W is adapted by a trainable low-rank product: the layer computes
`x @ W.T + b + alpha * (x @ A @ B)`.
"""

from __future__ import annotations

import math  # noqa: F401  (for kaiming_uniform_'s a=math.sqrt(5))

import torch
from torch import nn


class LoRALayer(nn.Module):
    """The low-rank update `alpha * (x @ A @ B)` added to a frozen linear layer (book Appendix E)."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        raise NotImplementedError(
            "A = Parameter(in_dim x rank) with kaiming_uniform_(a=sqrt(5)), B = zeros(rank x out_dim), "
            "keep alpha (book Appendix E)"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("return alpha * (x @ A @ B) (book Appendix E)")


class LinearWithLoRA(nn.Module):
    """A linear layer plus its LoRA update: `linear(x) + lora(x)` (book Appendix E)."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        raise NotImplementedError(
            "keep `linear` and build `self.lora = LoRALayer(linear.in_features, "
            "linear.out_features, rank, alpha)` on the linear layer's device (book Appendix E)"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("return self.linear(x) + self.lora(x) (book Appendix E)")


def replace_linear_with_lora(model: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Wrap every `nn.Linear` inside `model` (recursively, in place) in `LinearWithLoRA` (book Appendix E)."""
    raise NotImplementedError(
        "loop over model.named_children(): setattr a LinearWithLoRA for each nn.Linear, "
        "recurse into everything else; return model (book Appendix E)"
    )


def freeze_model(model: nn.Module) -> nn.Module:
    """Make every parameter of `model` non-trainable (book Appendix E: freeze, then add LoRA)."""
    raise NotImplementedError(
        "set requires_grad = False on every model.parameters(); return model (book Appendix E)"
    )


def count_trainable_parameters(model: nn.Module) -> int:
    """The number of parameters the optimizer would update (book Appendix E prints it)."""
    raise NotImplementedError(
        "sum p.numel() over the parameters with p.requires_grad (book Appendix E)"
    )


def merge_lora(layer: LinearWithLoRA) -> nn.Linear:
    """A plain `nn.Linear` computing what `layer` does: weight W + alpha * (A @ B)^T (book Appendix E)."""
    raise NotImplementedError(
        "new nn.Linear with weight = W + alpha * (A @ B).T and the same bias; mind the "
        "transpose: nn.Linear stores (out, in) (book Appendix E)"
    )


def merge_lora_weights(model: nn.Module) -> nn.Module:
    """Replace every `LinearWithLoRA` inside `model` (in place) by its merged `nn.Linear`."""
    raise NotImplementedError(
        "like replace_linear_with_lora, but setattr merge_lora(module) for each "
        "LinearWithLoRA (book Appendix E)"
    )
