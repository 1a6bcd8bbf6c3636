"""Helpers for the benchmarks: devices, parameters, the book's real instruction batches, models.

Environment knobs (pytest options cannot be added from a sub-folder conftest):
FTKIT_BENCH_REPEATS (interleaved book/fast repeats, default 3), FTKIT_BENCH_ROUNDS
(timed rounds per repeat; default per model size) and FTKIT_BENCH_NEW_TOKENS (default 256).
"""

from __future__ import annotations

import os
import platform
import statistics
from functools import cache

import pytest
import torch

from ftkit.engine.fused import fuse_model
from ftkit.presets import get_config
from reference.model import GPTModel

SIZES = ("tiny", "gpt2-small", "gpt2-medium")
DEVICES = ("cpu", "cuda", "mps")
ROUNDS = {"tiny": 10, "gpt2-small": 3, "gpt2-medium": 2}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return int(value)


def device_available(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return torch.backends.mps.is_available()
    return True


@cache
def device_name(device: str) -> str:
    """A readable name for the hardware behind `device` (GPU model, or CPU model and threads)."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    if device == "mps":
        return f"Apple {platform.machine()} (MPS)"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} (CPU, {torch.get_num_threads()} threads)"


def bf16_supported(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return device == "cpu"


def cases(kinds: tuple[str, ...], sizes: tuple[str, ...] = SIZES, repeats: int | None = None):
    """pytest params (device, size, repeat, path), book and fast paths interleaved per repeat.

    tiny on CPU carries no marker so the default suite runs it (timing disabled) as a
    smoke test; bigger models are `benchmark`, CUDA ones also `gpu`.
    """
    repeats = repeats or env_int("FTKIT_BENCH_REPEATS", 3)
    params = []
    for device in DEVICES:
        for size in sizes:
            marks = []
            if device == "cuda":
                marks += [pytest.mark.gpu, pytest.mark.benchmark]
            elif device == "mps" or size != "tiny":
                marks.append(pytest.mark.benchmark)
            marks.append(
                pytest.mark.skipif(not device_available(device), reason=f"no {device} device")
            )
            # Only the tiny model repeats in the default run; one repeat is enough to smoke-test.
            for repeat in range(repeats if marks[:-1] else 1):
                for path in kinds:
                    params.append(
                        pytest.param(
                            device,
                            size,
                            repeat,
                            path,
                            marks=marks,
                            id=f"{device}-{size}-r{repeat}-{path}",
                        )
                    )
    return params


@cache
def instruction_batches(batch_size: int = 8) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
    """The book's training batches (935 entries, seed 123, drop_last) and one epoch's token count."""
    from ftkit.data.instruction import create_instruction_loaders, load_instruction_data
    from ftkit.io.tokenizer import get_tokenizer
    from reference.instruction_data import split_data

    train, test, val = split_data(load_instruction_data())
    loader, _, _ = create_instruction_loaders(
        train, val, test, get_tokenizer(), batch_size=batch_size
    )
    batches = list(loader)
    return batches, sum(inputs.numel() for inputs, _ in batches)


def typical_batch(
    batches: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch whose padded length is the median of the epoch's (a real, typical batch)."""
    lengths = [inputs.shape[1] for inputs, _ in batches]
    median = statistics.median_low(lengths)
    return batches[lengths.index(median)]


def build_model(size: str, path: str, device: str):
    """A seed-123 random-init model: the book package's GPTModel for "book", ours otherwise."""
    cfg = get_config(size)
    torch.manual_seed(123)
    if path == "book":
        from book_package import book_module

        model = book_module("ch04").GPTModel(cfg)
    else:
        model = fuse_model(GPTModel(cfg))
    return model.to(device), cfg
