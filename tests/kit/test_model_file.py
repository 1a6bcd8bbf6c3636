"""`ftkit.io.model_file`: saved model files read back without a random init, same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ftkit.io.model_file import load_saved_model
from ftkit.presets import get_config
from reference.model import GPTModel


def saved_tiny(tmp_path) -> tuple[nn.Module, object]:
    torch.manual_seed(123)
    model = GPTModel(get_config("tiny"))
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_loaded_model_has_the_saved_weights_and_buffers(tmp_path):
    model, path = saved_tiny(tmp_path)
    loaded = load_saved_model(lambda: GPTModel(get_config("tiny")), path, fix="retrain")
    expected, actual = model.state_dict(), loaded.state_dict()
    assert list(actual) == list(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    x = torch.randint(0, 50257, (1, 6))
    assert torch.equal(loaded.eval()(x), model.eval()(x))


def test_no_random_init_happens(tmp_path):
    # A random init draws from torch's generator; building on the meta device draws nothing.
    _, path = saved_tiny(tmp_path)
    before = torch.get_rng_state()
    load_saved_model(lambda: GPTModel(get_config("tiny")), path, fix="retrain")
    assert torch.equal(torch.get_rng_state(), before)


class WithUnsavedBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("scale", torch.full((2,), 2.0), persistent=False)

    def forward(self, x):
        return self.linear(x) * self.scale


def test_a_buffer_not_in_the_file_keeps_its_real_value(tmp_path):
    module = WithUnsavedBuffer()
    torch.save(module.state_dict(), tmp_path / "m.pth")
    loaded = load_saved_model(WithUnsavedBuffer, tmp_path / "m.pth", fix="retrain")
    assert torch.equal(loaded.scale, torch.full((2,), 2.0))
    assert torch.equal(loaded.linear.weight, module.linear.weight)


def test_truncated_file_and_wrong_shapes_are_named(tmp_path):
    _, path = saved_tiny(tmp_path)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(
        ValueError, match=r"cut\.pth cannot be read: the file is truncated.*retrain"
    ):
        load_saved_model(lambda: GPTModel(get_config("tiny")), cut, fix="retrain")
    other = get_config("tiny", emb_dim=32)
    with pytest.raises(
        ValueError,
        match=r"model\.pth does not fit the config in \S*cfg\.json: size mismatch for tok_emb\.weight.*\(and \d+ more\)$",
    ):
        load_saved_model(
            lambda: GPTModel(other), path, fix="retrain", config_file=tmp_path / "cfg.json"
        )
