"""Where a run computes and in which number format: the device, and what the hardware computes fast.

`resolve_device` picks the device (`auto`: CUDA, then Apple's MPS, then the CPU);
`default_precision` says what the hardware computes fast (bf16 or fp32: what "auto"
means; the backend, `ftkit.engine.backend.make_backend`, decides a run's format);
`autocast_context` runs a block in a format.
"""

from __future__ import annotations

import contextlib

import torch

from ftkit.choices import DEVICES

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; other names are checked to exist."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose auto, cpu, cuda or mps")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but torch sees no Apple MPS device here")
    return torch.device(device)


def autocast_context(
    device: torch.device | str, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    """`torch.autocast` for `dtype` on `device`'s type, or a no-op when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def default_precision(device: torch.device | str) -> str:
    """ "bf16" where the device computes it in hardware (CPU with AVX-512-BF16/AMX, CUDA bf16), else "fp32".

    Without hardware support bf16 is emulated and slower than float32, so "auto" never picks it.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if kind == "cpu":
        from ftkit.doctor import cpu_flags

        return "bf16" if cpu_flags() & {"avx512_bf16", "amx_bf16"} else "fp32"
    return "fp32"
