"""End-to-end benchmarks: `ftkit instruct train` and `ftkit instruct respond`, default vs --exact.

Both paths run the recipe itself (`ftkit.recipes.instruct.finetune`, `ftkit.recipes.respond
.respond`), on the same data slice and a seed-123 random-init model of the benchmark's size
(as the step benchmarks: no download; the preset's GPT-2 weights would not change the
speed). Train: one epoch on the first FTKIT_BENCH_E2E_LIMIT entries (default 160: 16
steps of the book's batch 8, with the book's evaluations, the after-epoch sample, the
epoch checkpoint and the saved model; the full run's 234 steps make these fixed costs
smaller still); tokens/s = tokens trained / wall time. Respond: the test entries of the
first FTKIT_BENCH_RESPOND_LIMIT entries (default 80, so 8 test entries: one batch of the
default --batch-size) answered by one model fine-tuned on them with up to
FTKIT_BENCH_RESPOND_TOKENS new
tokens each (default 256, the book's and the command's: the book's path then takes ~8
minutes on a 2-core CPU); the rate is responses/s, and both paths' responses are kept so
`ftkit bench` can check they are identical (float32). Before each timed run, `os.sync()`
(untimed) writes the previous run's files out, so neither path pays for the other's
gigabytes of checkpoints still in the page cache.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from bench_helpers import cases, device_name, env_int

from ftkit.presets import get_config
from ftkit.recipes import instruct, runtime
from ftkit.recipes.respond import respond
from reference.model import GPTModel

PATHS = ("exact", "fast")
# (device, size, entries) -> (folder, finetune's result) of a fast-path one-epoch model: the
# train benchmark's fast run when it trained on as many entries as respond needs (always in a
# plain `pytest` run, where both use 20), else respond trains its own.
TRAINED: dict[tuple[str, str, int], tuple] = {}


def quiet(*_args) -> None:
    """A `say` that drops the recipe's lines."""


@pytest.fixture
def random_init(monkeypatch):
    """Presets build seed-123 random-init models (the benchmarks' models) instead of downloading."""

    def build(preset, *, models_dir=None):
        torch.manual_seed(123)
        return GPTModel(get_config(runtime.canonical_preset(preset))), False

    monkeypatch.setattr(runtime, "build_model", build)


def limit_for(benchmark, name: str = "FTKIT_BENCH_E2E_LIMIT", default: int = 160) -> int:
    return 20 if benchmark.disabled else env_int(name, default)


def train(out, size: str, device: str, limit: int, exact: bool) -> dict:
    return instruct.finetune(
        out, model=size, limit=limit, epochs=1, device=device, exact=exact, say=quiet
    )


def info(benchmark, kind: str, device: str, size: str, path: str, dtype: str, **extra) -> None:
    benchmark.extra_info.update(
        kind=kind,
        device=device,
        device_name=device_name(device),
        dtype=dtype,
        size=size,
        path=path,
        **extra,
    )


@pytest.mark.parametrize(
    ("device", "size", "repeat", "path"),
    cases(PATHS, repeats=env_int("FTKIT_BENCH_E2E_REPEATS", 1)),
)
def test_instruct_train_end_to_end(benchmark, random_init, tmp_path, device, size, repeat, path):
    result = {}
    limit = limit_for(benchmark)

    def run():
        result.update(train(tmp_path, size, device, limit, path == "exact"))

    benchmark.pedantic(run, setup=os.sync, rounds=1, warmup_rounds=0)
    history = result["history"]
    info(
        benchmark,
        "e2e-train",
        device,
        size,
        path,
        result["settings"]["precision"],
        tokens_per_round=history["tokens_seen"],
        steps=history["global_step"] + 1,
        losses=history["train_losses"],
        repeat=repeat,
    )
    assert history["epochs_done"] == 1
    if path == "fast":
        TRAINED.setdefault((device, size, limit), (tmp_path, result))


@pytest.mark.parametrize(
    ("device", "size", "repeat", "path"),
    cases(PATHS, repeats=env_int("FTKIT_BENCH_E2E_REPEATS", 1)),
)
def test_instruct_respond_end_to_end(
    benchmark, random_init, tmp_path_factory, device, size, repeat, path
):
    respond_limit = limit_for(benchmark, "FTKIT_BENCH_RESPOND_LIMIT", 80)
    key = (device, size, respond_limit)
    if key not in TRAINED:  # one fine-tuned model answers for both paths
        folder = tmp_path_factory.mktemp(f"trained-{size}")
        TRAINED[key] = (folder, train(folder, size, device, respond_limit, False))
    folder, trained = TRAINED[key]
    out = tmp_path_factory.mktemp(f"respond-{path}")
    for name in ("model", "config"):
        shutil.copy(trained["paths"][name], out)
    new_tokens = 8 if benchmark.disabled else env_int("FTKIT_BENCH_RESPOND_TOKENS", 256)
    answered = []

    def run():
        answered[:] = respond(
            out,
            model=size,
            device=device,
            max_new_tokens=new_tokens,
            progress=False,
            exact=path == "exact",
            say=quiet,
        )

    benchmark.pedantic(run, setup=os.sync, rounds=1, warmup_rounds=0)
    info(
        benchmark,
        "e2e-respond",
        device,
        size,
        path,
        "fp32",
        tokens_per_round=len(answered),
        new_tokens=new_tokens,
        responses=[entry["model_response"] for entry in answered],
        repeat=repeat,
    )
    assert answered and all("model_response" in entry for entry in answered)
