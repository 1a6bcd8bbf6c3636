"""Fixtures for the benchmarks (helpers are in bench_helpers.py)."""

from __future__ import annotations

import os

import pytest
import torch
from bench_helpers import env_int, instruction_batches


@pytest.fixture(scope="session")
def real_batches():
    return instruction_batches()


@pytest.fixture(autouse=True, scope="session")
def _threads():
    # The targets are stated for this kit's 2-core CPU; fixed threads make runs comparable.
    torch.set_num_threads(env_int("FTKIT_BENCH_THREADS", min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _machine_load(request):
    """Record how much of the CPUs other processes used while a benchmark ran (`ftkit bench ratios`
    flags a pair measured on a busy machine)."""
    from ftkit.bench import cpu_snapshot, others_cpu_share

    if "benchmark" not in request.fixturenames:
        yield
        return
    benchmark = request.getfixturevalue("benchmark")
    before = cpu_snapshot()
    yield
    share = others_cpu_share(before, cpu_snapshot())
    if share is not None:
        benchmark.extra_info["others_cpu_share"] = round(share, 3)
