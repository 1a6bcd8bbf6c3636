"""Fast by default: the recipes train through the fast `Backend` (`ftkit.engine.backend`); `--exact` runs the book's code.

On the tiny random-init model with a few entries: the fast path in float32 gives the
book path's losses to 1e-5 relative, bf16 runs and is recorded, the saved model loads
strictly into the book's `GPTModel`, and a checkpoint never resumes on the other path.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from ftkit.cli import main
from ftkit.engine import backend
from ftkit.presets import get_config
from ftkit.recipes import classify
from ftkit.recipes import instruct as recipe
from reference.model import GPTModel

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = {
    "model": "tiny",
    "limit": 10,
    "batch_size": 2,
    "allowed_max_length": 64,
    "device": "cpu",
}
WHY_SAME = (
    "the fast path computes the book's math (fused kernels, fused AdamW) in float32: only "
    "the order of float operations differs"
)


def quiet(*_args) -> None:
    """A `say` that drops the recipe's lines."""


def assert_rel_close(actual: list[float], expected: list[float], what: str) -> None:
    assert len(actual) == len(expected) and actual, f"{what}: {actual} vs {expected}"
    worst = max(abs(a - b) / abs(b) for a, b in zip(actual, expected))
    assert worst <= 1e-5, f"{what}: {actual} vs {expected} ({worst:.2e} apart); {WHY_SAME}"


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("exact")
    return recipe.finetune(out, epochs=2, exact=True, say=quiet, **QUICK)


def test_instruct_fast_fp32_gives_the_exact_paths_losses(exact_run, tmp_path):
    fast_run = recipe.finetune(tmp_path, epochs=2, precision="fp32", say=quiet, **QUICK)
    for key in ("train_losses", "val_losses"):
        assert_rel_close(fast_run["history"][key], exact_run["history"][key], key)
    assert fast_run["settings"]["path"] == "fast" and fast_run["settings"]["precision"] == "fp32"
    assert exact_run["settings"]["path"] == "exact"
    assert exact_run["settings"]["precision"] == "fp32"
    # The saved weights keep the book's layout: they load strictly into GPTModel.
    state = torch.load(fast_run["paths"]["model"], weights_only=True)
    GPTModel(get_config("tiny")).load_state_dict(state, strict=True)


@pytest.mark.slow  # bf16 autocast is emulated on CPUs without bf16 units (~20 s on 2 cores)
def test_instruct_bf16_runs_and_is_recorded(exact_run, tmp_path):
    lines: list[str] = []
    run = recipe.finetune(tmp_path, epochs=2, precision="bf16", say=lines.append, **QUICK)
    assert run["settings"]["precision"] == "bf16"
    assert any("Training path: fast" in line and "bf16" in line for line in lines), lines
    record = json.loads(run["paths"]["config"].read_text())
    assert record["precision"] == "bf16" and record["path"] == "fast"
    losses = run["history"]["train_losses"]
    assert all(math.isfinite(x) for x in losses)
    # bf16 rounds matmul inputs: close to float32, not equal.
    for got, want in zip(losses, exact_run["history"]["train_losses"]):
        assert abs(got - want) / want < 0.05, (losses, exact_run["history"]["train_losses"])


def test_auto_precision_follows_the_hardware():
    assert backend.resolve_precision("auto", "cpu", exact=True) == "fp32"
    assert backend.resolve_precision("fp32", "cpu") == "fp32"
    assert backend.resolve_precision("auto", "cpu") in ("bf16", "fp32")
    with pytest.raises(ValueError, match="--exact"):
        backend.resolve_precision("bf16", "cpu", exact=True)


def test_resume_refuses_to_mix_the_exact_and_fast_paths(exact_run, tmp_path):
    recipe.finetune(tmp_path, epochs=1, exact=True, say=quiet, **QUICK)
    with pytest.raises(ValueError, match="exact: checkpoint True vs now False"):
        recipe.finetune(tmp_path, epochs=2, resume=True, say=quiet, **QUICK)
    with pytest.raises(ValueError, match="precision: checkpoint 'fp32' vs now 'bf16'"):
        recipe.finetune(tmp_path, epochs=2, resume=True, precision="bf16", say=quiet, **QUICK)


def test_classify_fast_fp32_gives_the_exact_paths_numbers(tmp_path):
    common = {"model": "tiny", "limit": 16, "epochs": 1, "device": "cpu", "eval_freq": 1}
    exact = classify.train(tmp_path / "exact", exact=True, say=quiet, **common)
    fp32 = classify.train(tmp_path / "fast", precision="fp32", say=quiet, **common)
    for key in ("train_losses", "val_losses"):
        assert_rel_close(fp32["history"][key], exact["history"][key], key)
    assert fp32["accuracy"] == exact["accuracy"]
    assert fp32["settings"]["path"] == "fast" and exact["settings"]["path"] == "exact"


def test_cli_exact_flag_is_recorded(tmp_path, capsys):
    args = ["classify", "train", "--model", "tiny", "--limit", "8", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path), "--no-progress", "--epochs", "1", "--exact"]) == 0
    assert "Training path: exact" in capsys.readouterr().out
    meta = json.loads((tmp_path / "history.json").read_text())
    assert meta["settings"]["exact"] is True and meta["settings"]["precision"] == "fp32"


def test_fast_sample_prints_the_books_sample(capsys):
    from ftkit.engine.kv_cache import print_sample_cached
    from ftkit.io.tokenizer import get_tokenizer
    from reference.training import generate_and_print_sample

    torch.manual_seed(1)
    model = GPTModel(get_config("tiny"))
    generate_and_print_sample(model, get_tokenizer(), "cpu", "Every effort moves you")
    book = capsys.readouterr().out
    print_sample_cached(model, get_tokenizer(), "cpu", "Every effort moves you")
    assert capsys.readouterr().out == book
    assert model.training, "the sample puts the model back in training mode, as the book's"
