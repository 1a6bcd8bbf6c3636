"""The base install works without TensorFlow: the tiny ch. 6 pipeline and `ftkit doctor` never import it.

`tensorflow` is hidden as if it were not installed, so this holds in the dev environment
(where TF is installed) as in the base one: `importlib.util.find_spec` answers None (torch
itself probes for it), and an import hook records any import and fails it. `.ci/base-install-check`
proves the same in a real second virtual environment built from `pip install -e .`.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

import pytest

from ftkit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


HIDDEN = ("tensorflow", "tensorboard", "keras")


class HideModules(importlib.abc.MetaPathFinder):
    """An import hook: importing a hidden module fails as if it were not installed, and is recorded."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in HIDDEN:
            self.attempts.append(fullname)
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by the test)")
        return None


@pytest.fixture
def no_tensorflow(monkeypatch):
    hook = HideModules()
    for name in list(sys.modules):
        if name.split(".")[0] in HIDDEN:
            monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    find_spec = importlib.util.find_spec

    def probe(name, package=None):
        return None if name.split(".")[0] in HIDDEN else find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", probe)
    return hook


def test_the_hook_hides_tensorflow(no_tensorflow):
    with pytest.raises(ModuleNotFoundError):
        import tensorflow  # noqa: F401
    assert importlib.util.find_spec("tensorflow") is None
    assert no_tensorflow.attempts == ["tensorflow"]


def test_tiny_classify_pipeline_runs_without_tensorflow(no_tensorflow, tmp_path, capsys):
    out = tmp_path / "clf"
    args = ["classify", "train", "--model", "tiny", "--epochs", "1", "--limit", "40"]
    assert main([*args, "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    assert "Test accuracy:" in capsys.readouterr().out
    assert (out / "history.json").is_file()
    assert no_tensorflow.attempts == [], f"the pipeline imported {no_tensorflow.attempts}"
    assert not [name for name in sys.modules if name.split(".")[0] in HIDDEN]


def test_doctor_runs_without_tensorflow_and_says_what_it_is_for(no_tensorflow, capsys):
    assert main(["doctor"]) == 0
    assert no_tensorflow.attempts == [], f"ftkit doctor imported {no_tensorflow.attempts}"
    assert "tensorflow" in capsys.readouterr().out
